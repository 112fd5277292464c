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
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

MODELYARD = str(Path(sys.executable).with_name("modelyard"))


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _rate(url: str, headers: dict[str, str], seconds: float = 8.0, clients: int = 32) -> float:
    done = 0
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                response = await client.get(url)
                assert response.status_code == 200, response.text
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
    return done / (time.perf_counter() - start)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "POSTGRES_"))}
        port = _port()
        env |= {"MODELYARD_DATA_DIR": str(Path(folder) / "data"), "MODELYARD_PORT": str(port)}
        created = subprocess.run(
            [MODELYARD, "accounts", "create", "--name", "bench", "--credits", "100"],
            env=env,
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
        )
        key = created.stdout.split("api_key: ")[1].strip()
        server = subprocess.Popen(
            [MODELYARD, "serve"], env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        base = f"http://127.0.0.1:{port}"
        try:
            while True:
                try:
                    httpx.get(f"{base}/health", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            headers = {"Authorization": f"Bearer {key}"}
            times, instance = [], ""
            for _ in range(5):
                start = time.perf_counter()
                instance = httpx.post(
                    f"{base}/v1/provision", headers=headers, json={"model": "smollm2-135m"}
                ).json()["data"]["instance"]["id"]
                while (
                    httpx.get(f"{base}/v1/instances/{instance}", headers=headers).json()["data"]["instance"][
                        "status"
                    ]
                    != "running"
                ):
                    time.sleep(0.05)
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
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
