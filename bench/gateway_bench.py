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
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from modelyard.adapters.eventstore.env import store_env
from modelyard.domain.application import Yard
from modelyard.domain.deployments import events as ev
from modelyard.domain.shared import ids
from modelyard.settings import load_settings

MODELYARD = str(Path(sys.executable).with_name("modelyard"))
BODY = {"model": "m", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 4}


async def _load(
    url: str, headers: dict[str, str], *, clients: int, seconds: float, rate: float | None
) -> tuple[list[float], float]:
    """Latencies (ms) and requests/s. With ``rate``, requests leave on a fixed schedule
    (open loop, at most ``clients`` in flight, queueing counted in the latency); without,
    ``clients`` loops send back to back (closed loop: the most this machine sustains)."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:
        gate = asyncio.Semaphore(clients)

        async def one(scheduled: float) -> None:
            async with gate:
                response = await client.post(url, json=BODY)
            latencies.append((time.perf_counter() - scheduled) * 1000)
            assert response.status_code == 200, response.text

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
    with tempfile.TemporaryDirectory() as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "POSTGRES_"))}
        env |= {
            "MODELYARD_DATA_DIR": str(Path(folder) / "data"),
            "MODELYARD_PORT": "18777",
            "MODELYARD_ENGINE": "simulated",
            "MODELYARD_RATE_LIMIT_RPM": "100000000",
        }
        out = subprocess.run(
            [MODELYARD, "accounts", "create", "--name", "b", "--credits", "50"],
            env=env,
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        key = out.split("api_key: ")[1].strip()
        server = subprocess.Popen(
            [MODELYARD, "serve"], env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        base = "http://127.0.0.1:18777"
        try:
            for _ in range(300):
                try:
                    httpx.get(f"{base}/health", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            manage = {"Authorization": f"Bearer {key}"}
            instance = httpx.post(
                f"{base}/v1/provision", headers=manage, json={"model": "smollm2-135m"}
            ).json()
            instance_id = instance["data"]["instance"]["id"]
            while (
                got := httpx.get(f"{base}/v1/instances/{instance_id}", headers=manage).json()["data"][
                    "instance"
                ]
            )["status"] != "running":
                time.sleep(0.1)
            store = Yard(env=store_env(load_settings(env)))
            replica = next(
                e.base_url
                for e in store.events.get(ids.parse_deployment_id(instance_id))
                if isinstance(e, ev.ReplicaStarted)
            )
            store.close()
            via = f"{got['openai_base_url']}/chat/completions"
            infer = {"Authorization": f"Bearer {got['api_key']}"}
            direct_url = f"{replica}/v1/chat/completions"
            for clients in (50, 200):
                for rate in (200.0, None):
                    direct, direct_rps = asyncio.run(
                        _load(direct_url, {}, clients=clients, seconds=5, rate=rate)
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
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
