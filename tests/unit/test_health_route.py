"""``/health`` reports the health of the workers running beside the API, on one background loop."""

from __future__ import annotations

import time
from pathlib import Path

from litestar.testing import TestClient

from modelyard.cli.compose import build_api, opened_core
from modelyard.settings import load_settings
from modelyard.workers.loop import BackgroundLoop, Backoff


def _broken() -> float:
    raise ConnectionError("broker unreachable")


def test_a_failing_worker_makes_health_degraded_and_says_why(tmp_path: Path) -> None:
    healthy = BackgroundLoop("views", lambda: 0.05)
    failing = BackgroundLoop("relay", _broken, backoff=Backoff(base_s=0.01, cap_s=0.05))
    with opened_core(load_settings({"MODELYARD_DATA_DIR": str(tmp_path)})) as core:
        for loop in (healthy, failing):
            loop.start()
        try:
            deadline = time.monotonic() + 10
            while failing.health().consecutive_failures < 2:
                assert time.monotonic() < deadline, "the failing step never ran twice"
                time.sleep(0.01)
            with TestClient(build_api(core, [healthy, failing])) as client:
                answer = client.get("/health")
        finally:
            for loop in (healthy, failing):
                loop.stop()
    assert answer.status_code == 200  # the process still serves: liveness holds
    body = answer.json()
    assert body["status"] == "degraded"
    workers = {w["name"]: w for w in body["workers"]}
    assert workers["views"]["healthy"] is True
    assert workers["relay"]["healthy"] is False
    assert workers["relay"]["consecutive_failures"] >= 2
    assert "broker unreachable" in workers["relay"]["last_error"]


def test_an_api_process_without_workers_is_ok(tmp_path: Path) -> None:
    with (
        opened_core(load_settings({"MODELYARD_DATA_DIR": str(tmp_path)})) as core,
        TestClient(build_api(core)) as client,
    ):
        body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["workers"] == []


def test_health_and_docs_are_never_rate_limited(tmp_path: Path) -> None:
    settings = load_settings({"MODELYARD_DATA_DIR": str(tmp_path), "MODELYARD_RATE_LIMIT_RPM": "1"})
    with opened_core(settings) as core, TestClient(build_api(core)) as client:
        probes = [client.get(path) for path in ("/health", "/docs/openapi.json") for _ in range(3)]
        counted = [client.get("/v1/models") for _ in range(2)]
    assert [p.status_code for p in probes] == [200] * 6
    assert not any("x-ratelimit-limit" in p.headers for p in probes)
    assert [c.status_code for c in counted] == [401, 429]
