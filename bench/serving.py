"""A scratch ``modelyard serve`` with a funded account, for the API benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

MODELYARD = str(Path(sys.executable).with_name("modelyard"))


@contextmanager
def served(**extra_env: str) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(base URL, management key, environment) of a server in a scratch folder."""
    with tempfile.TemporaryDirectory() as folder, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "POSTGRES_"))}
        env |= {"MODELYARD_DATA_DIR": str(Path(folder) / "data"), "MODELYARD_PORT": str(port), **extra_env}
        out = subprocess.run(
            [MODELYARD, "accounts", "create", "--name", "bench", "--credits", "100"],
            env=env, cwd=folder, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        key = out.split("api_key: ")[1].strip()
        log = open(os.environ.get("BENCH_SERVER_LOG", os.devnull), "ab")  # noqa: SIM115
        server = subprocess.Popen(
            [MODELYARD, "serve"], env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        try:
            while True:
                try:
                    httpx.get(f"{base}/health", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            yield base, key, env
        finally:
            server.terminate()
            server.wait(timeout=60)


def provision_running(base: str, key: str, model: str = "smollm2-135m") -> dict[str, object]:
    """Provision ``model`` and wait until it runs; the instance as the API shows it then."""
    headers = {"Authorization": f"Bearer {key}"}
    instance = httpx.post(f"{base}/v1/provision", headers=headers, json={"model": model}).json()
    instance_id = instance["data"]["instance"]["id"]
    while True:
        shown: dict[str, object] = httpx.get(f"{base}/v1/instances/{instance_id}", headers=headers).json()[
            "data"
        ]["instance"]
        if shown["status"] == "running":
            return shown
        time.sleep(0.05)
