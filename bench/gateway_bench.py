"""Latency the gateway adds, measured beside calling the engine directly, in one run.

    .venv/bin/python bench/gateway_bench.py

Starts ``modelyard serve`` with the simulated engine at zero delay, provisions one
instance, then at 50 and 200 concurrent clients sends the same chat request for a few
seconds to the replica directly and through ``/v1/{id}/v1/chat/completions``, and prints
p50/p99 latency of each, the difference, and requests/s. Client, gateway and replica
share this machine's cores, so the figures include the client's own cost.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp
from serving import provision_running, served

from modelyard.adapters.eventstore.env import store_env
from modelyard.domain.deployments import events as ev
from modelyard.domain.shared import ids
from modelyard.domain.shared.store import Store
from modelyard.settings import load_settings

BODY = {"model": "m", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 4}


async def _load(
    url: str, headers: dict[str, str], *, clients: int, seconds: float, rate: float | None
) -> tuple[list[float], float]:
    """Latencies (ms) and requests/s. With ``rate``, requests leave on a fixed schedule
    (open loop, at most ``clients`` in flight, queueing counted in the latency); without,
    ``clients`` loops send back to back (closed loop: the most this machine sustains)."""
    latencies: list[float] = []
    # aiohttp, not httpx, on the client side too: httpx's pool costs more CPU per request
    # than the gateway does, and client and server share this machine's cores.
    connector = aiohttp.TCPConnector(limit=clients, keepalive_timeout=1.0)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as client:
        gate = asyncio.Semaphore(clients)

        async def one(scheduled: float) -> None:
            async with gate, client.post(url, json=BODY) as response:
                text = await response.text()
            latencies.append((time.perf_counter() - scheduled) * 1000)
            assert response.status == 200, text

        start = time.perf_counter()
        if rate is None:
            deadline = start + seconds

            async def loop() -> None:
                while time.perf_counter() < deadline:
                    await one(time.perf_counter())

            await asyncio.gather(*(loop() for _ in range(clients)))
        else:
            tasks = []
            for n in range(int(rate * seconds)):
                at = start + n / rate
                await asyncio.sleep(max(0.0, at - time.perf_counter()))
                tasks.append(asyncio.create_task(one(at)))
            await asyncio.gather(*tasks)
    return latencies, len(latencies) / (time.perf_counter() - start)


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


def main() -> None:
    with served(MODELYARD_ENGINE="simulated", MODELYARD_RATE_LIMIT_RPM="100000000") as (base, key, env):
        got = provision_running(base, key)
        store = Store(env=store_env(load_settings(env)))
        started = next(
            e
            for e in store.events.get(ids.parse_deployment_id(str(got["id"])))
            if isinstance(e, ev.ReplicaStarted)
        )
        store.close()
        replica = started.base_url
        # The replica answers only calls with the token it was started with, as the gateway sends.
        own = {"Authorization": f"Bearer {started.token}"}
        via = f"{got['openai_base_url']}/chat/completions"
        infer = {"Authorization": f"Bearer {got['api_key']}"}
        direct_url = f"{replica}/v1/chat/completions"
        # Warm both paths first: connection pools, the key and deployment caches, the JIT-free
        # but lazy parts of the stack. Only what follows is measured.
        asyncio.run(_load(direct_url, own, clients=50, seconds=2, rate=100.0))
        asyncio.run(_load(via, infer, clients=50, seconds=2, rate=100.0))
        for clients in (50, 200):
            for rate in (200.0, None):
                direct, direct_rps = asyncio.run(
                    _load(direct_url, own, clients=clients, seconds=5, rate=rate)
                )
                gated, gated_rps = asyncio.run(_load(via, infer, clients=clients, seconds=5, rate=rate))
                mode = "at 200 req/s" if rate else "saturated  "
                print(
                    f"{clients:>3} in flight {mode}  direct p50 {_p(direct, 50):7.1f}"
                    f" p99 {_p(direct, 99):7.1f} ms"
                    f" {direct_rps:5.0f}/s | gateway p50 {_p(gated, 50):7.1f} p99 {_p(gated, 99):7.1f} ms"
                    f" {gated_rps:5.0f}/s | added p50 {_p(gated, 50) - _p(direct, 50):7.1f}"
                    f" p99 {_p(gated, 99) - _p(direct, 99):7.1f} ms"
                )


if __name__ == "__main__":
    main()
