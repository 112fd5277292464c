"""API figures on this machine, beside a baseline from the same run.

    .venv/bin/python bench/api_bench.py

Starts ``modelyard serve`` (embedded default, real llama.cpp) in a scratch folder, then:
1. time from ``POST /v1/provision`` to ``running`` for smollm2-135m (five runs);
2. ``GET /v1/instances/{id}`` requests/s with 32 concurrent clients, beside ``GET /health``
   (the same server doing no work: the framework's own ceiling).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

import aiohttp
from serving import provision_running, served


async def _rate(url: str, headers: dict[str, str], seconds: float = 8.0, clients: int = 32) -> float:
    done = 0
    deadline = time.perf_counter() + seconds
    # aiohttp on the client side: httpx's pool costs the client more CPU per request than
    # the server spends, and both share this machine's cores.
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as client:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with client.get(url) as response:
                    text = await response.text()
                assert response.status == 200, text
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
    return done / (time.perf_counter() - start)


def main() -> None:
    # The limit is not what is measured here.
    with served(MODELYARD_RATE_LIMIT_RPM="100000000") as (base, key, _):
        headers = {"Authorization": f"Bearer {key}"}
        times, instance = [], ""
        for _ in range(5):
            start = time.perf_counter()
            instance = str(provision_running(base, key)["id"])
            times.append(time.perf_counter() - start)
        print(
            f"provision -> running (smollm2-135m, llama.cpp): median {statistics.median(times):.2f} s, "
            f"min {min(times):.2f} s, max {max(times):.2f} s over {len(times)} runs"
        )
        health = asyncio.run(_rate(f"{base}/health", {}))
        get = asyncio.run(_rate(f"{base}/v1/instances/{instance}", headers))
        print(
            f"GET /v1/instances/{{id}}: {get:.0f} req/s    GET /health: {health:.0f} req/s    "
            f"ratio {get / health:.2f}    (32 clients, {os.cpu_count()} cores)"
        )


if __name__ == "__main__":
    main()
