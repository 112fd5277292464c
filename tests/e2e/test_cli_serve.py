"""The command-line tool as a user types it: `modelyard --help`, `modelyard serve`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e
MODELYARD = Path(sys.executable).with_name("modelyard")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_help_lists_the_commands() -> None:
    result = subprocess.run([str(MODELYARD), "--help"], capture_output=True, text=True, check=True)
    assert "serve" in result.stdout
    assert "services" in result.stdout


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "MODELYARD_DATA_DIR": str(tmp_path / "data"), "MODELYARD_PORT": str(port)}
    proc = subprocess.Popen(
        [str(MODELYARD), "serve"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "modelyard serve did not come up"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_answers_its_health_route(served: str) -> None:
    response = httpx.get(f"{served}/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_serve_publishes_its_openapi_document(served: str) -> None:
    response = httpx.get(f"{served}/docs/openapi.json")
    assert response.status_code == 200
    assert "/health" in response.json()["paths"]
