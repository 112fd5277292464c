"""Latency routed chat adds over calling the deployment directly, measured in one run.

    .venv/bin/python bench/routed_chat_bench.py

Starts ``modelyard serve`` with the simulated engine at zero delay, provisions one
instance, adds an account upstream that points back at that instance's OpenAI route, and
sends the same chat request, one client at a time and then 20 at once, for a few seconds
each to:

- the deployment directly (``/v1/{id}/v1/chat/completions`` with its ``auxk_`` key): the
  baseline;
- routed chat by the deployment's model (``/api/v1/public/chat/completions``): the route is
  resolved, the same forwarder called;
- routed chat by a model only the upstream serves: one more HTTP hop (gateway → gateway);
- routed chat whose first upstream is down (a refused connection), then the same upstream:
  what a fallback costs.

It prints p50/p99 of each and the difference from the baseline. Client, gateway and
replica share this machine's cores, so the figures include the client's own cost.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from typing import Any

import aiohttp
import httpx
from serving import provision_running, served

ASK = [{"role": "user", "content": "hello there"}]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _load(
    url: str, headers: dict[str, str], model: str, *, clients: int, seconds: float
) -> list[float]:
    """Latencies (ms) of ``clients`` loops sending back to back for ``seconds``."""
    latencies: list[float] = []
    body = {"model": model, "messages": ASK, "max_tokens": 4}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as client:
        deadline = time.perf_counter() + seconds

        async def loop() -> None:
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                async with client.post(url, json=body) as response:
                    text = await response.text()
                assert response.status == 200, text
                latencies.append((time.perf_counter() - began) * 1000)

        await asyncio.gather(*(loop() for _ in range(clients)))
    return latencies


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


def main() -> None:
    with served(MODELYARD_ENGINE="simulated", MODELYARD_RATE_LIMIT_RPM="100000000") as (base, key, _env):
        got = provision_running(base, key)
        manage = httpx.Client(base_url=f"{base}/api/v1/public", headers={"Authorization": f"Bearer {key}"})
        back = {"base_url": str(got["openai_base_url"]), "api_key": str(got["api_key"])}
        dead = {"base_url": f"http://127.0.0.1:{_free_port()}/v1"}
        for name, provider, models in (
            ("loop", back, ["via-upstream"]),
            ("dead", dead, ["via-fallback"]),
            ("loop2", back, ["via-fallback"]),
        ):
            assert manage.put(f"/providers/{name}", json=provider | {"models": models}).status_code == 200
        by_key = {"Authorization": f"Bearer {got['api_key']}"}
        instance = (by_key, f"{got['openai_base_url']}/chat/completions")
        routed = ({"Authorization": f"Bearer {key}"}, f"{base}/api/v1/public/chat/completions")
        paths: list[tuple[str, tuple[dict[str, str], str], str]] = [
            ("deployment directly", instance, "m"),
            ("routed to the deployment", routed, "smollm2-135m"),
            ("routed to an upstream", routed, "via-upstream"),
            ("routed, first upstream down", routed, "via-fallback"),
        ]
        for _, (headers, url), model in paths:  # warm pools and caches; not measured
            asyncio.run(_load(url, headers, model, clients=4, seconds=1))
        for clients in (1, 20):
            results: dict[str, Any] = {}
            for label, (headers, url), model in paths:
                results[label] = asyncio.run(_load(url, headers, model, clients=clients, seconds=4))
            baseline = results["deployment directly"]
            for label, latencies in results.items():
                added = (
                    ""
                    if latencies is baseline
                    else f" | added p50 {_p(latencies, 50) - _p(baseline, 50):6.2f}"
                    f" p99 {_p(latencies, 99) - _p(baseline, 99):6.2f} ms"
                    f" (x{_p(latencies, 50) / _p(baseline, 50):.2f} p50)"
                )
                print(
                    f"{clients:>2} client(s)  {label:<28} p50 {_p(latencies, 50):6.2f}"
                    f" p99 {_p(latencies, 99):6.2f} ms  n={len(latencies):>5}{added}"
                )


if __name__ == "__main__":
    main()
