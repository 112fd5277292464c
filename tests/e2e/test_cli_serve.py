"""The command-line tool as a user types it: `modelyard --help`, `modelyard serve`."""

from __future__ import annotations

import os
import re
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
    log = tmp_path / "serve.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([str(MODELYARD), "serve"], env=env, cwd=tmp_path, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
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
    # The embedded default runs every worker but the relay (there is no Kafka to relay to).
    workers = {w["name"]: w for w in response.json()["workers"]}
    assert set(workers) == {
        "views", "meter", "reconciler", "janitor", "autoscaler", "sla", "webhooks", "balance_guard",
    }  # fmt: skip
    assert all(w["healthy"] and w["consecutive_failures"] == 0 for w in workers.values())


def test_serve_publishes_its_openapi_document(served: str) -> None:
    response = httpx.get(f"{served}/docs/openapi.json")
    assert response.status_code == 200
    assert "/health" in response.json()["paths"]


def test_serve_logs_one_access_line_per_request_and_never_the_key(served: str, tmp_path: Path) -> None:
    secret = "auxen_live_" + "0" * 32
    answer = httpx.get(
        f"{served}/v1/balance", headers={"Authorization": f"Bearer {secret}", "X-Request-ID": "trace-42"}
    )
    assert answer.status_code == 401
    assert answer.headers["x-request-id"] == "trace-42"
    made_up = httpx.get(f"{served}/health").headers["x-request-id"]
    line = re.compile(r"INFO modelyard\.access: GET /health 200 \d+\.\dms id=" + made_up)
    log = tmp_path / "serve.log"
    deadline = time.monotonic() + 10
    while not line.search(log.read_text()):
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.05)
    assert re.search(r"INFO modelyard\.access: GET /v1/balance 401 \d+\.\dms id=trace-42", log.read_text())
    assert secret not in log.read_text()
