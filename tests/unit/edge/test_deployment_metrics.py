"""Observability from the views: per-model usage (tokens, cost, latency percentiles, error
rate) and one deployment's figures with its SLA breach history."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.service import MeterMinute, SlaObservation
from modelyard.domain.shared import ids
from modelyard.domain.usage.service import RecordUsage

from .conftest import Edge, EdgeFactory

BASE = "/api/v1/public"


def _until(edge: Edge, url: str, ready: Any, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = edge.client.get(url, headers=edge.auth).json()
        if ready(body):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_usage_per_model_and_a_deployments_metrics(make_edge: EdgeFactory) -> None:
    edge = make_edge(MODELYARD_ENGINE="simulated")
    made = edge.client.post(
        f"{BASE}/deployments", json={"model_id": "llama3.1-8b", "gpu_type": "h100"}, headers=edge.auth
    ).json()
    dep = ids.parse_deployment_id(made["id"])
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=3)
    edge.bring_up(dep)
    now = datetime.now(UTC)
    account = ids.public_id(ids.ACCOUNT, edge.account)
    records = [
        RecordUsage(record_id=uuid.uuid4(), at=now, deployment_id=dep.hex, model="llama3.1-8b",
                    account_id=account, prompt_tokens=10, completion_tokens=n, latency_ms=float(n * 10),
                    ttft_ms=float(n), status=200 if n != 40 else 502)
        for n in (10, 20, 30, 40)
    ]  # fmt: skip
    edge.core.services.usage.record(records)
    service = edge.core.services.deployments
    breach = SlaObservation(deployment_id=dep, metric=ev.SlaMetric.TTFT_MS, value=900.0, target=500, at=now)
    service.record_sla_breach(breach)

    body = _until(edge, f"{BASE}/inference/metrics", lambda b: b["models"])
    (model,) = body["models"]
    assert model["model"] == "llama3.1-8b"
    assert (model["requests"], model["errors"], model["error_rate"]) == (4, 1, 0.25)
    assert (model["prompt_tokens"], model["completion_tokens"], model["total_tokens"]) == (40, 100, 140)
    p50, p95, p99 = (model["latency_ms"][p] for p in ("p50", "p95", "p99"))
    assert p50 is not None
    assert p50 <= p95 <= p99
    assert 100 <= p50 <= 400
    assert model["cost_usd"] == "0.000000"  # nothing metered yet

    metrics = _until(edge, f"{BASE}/deployments/{made['id']}/metrics", lambda b: b["sla_breaches"])
    assert metrics["deployment_id"] == made["id"]
    assert (metrics["status"], metrics["replicas"], metrics["ready_replicas"]) == ("active", 1, 1)
    assert metrics["live"] is False  # the fake replica of bring_up does not answer
    assert metrics["active_concurrency"] is None
    assert metrics["requests"] == 4
    assert metrics["completion_tokens"] == 100
    assert metrics["throughput_tps"] == round(100 / 300, 3)
    assert metrics["ttft_ms"]["p50"] is not None
    assert [(b["metric"], b["kind"], b["value"]) for b in metrics["sla_breaches"]] == [
        ("ttft_ms", "breached", 900.0)
    ]

    # A metered minute shows as the model's cost.
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    charged = service.meter(MeterMinute(deployment_id=dep, minute=minute, at=minute + timedelta(minutes=1)))
    assert charged.amount > 0
    assert start < minute
    with_cost = _until(edge, f"{BASE}/inference/metrics", lambda b: b["models"][0]["cost_usd"] != "0.000000")
    assert with_cost["models"][0]["cost_usd"] == f"{charged.amount / 1_000_000:.6f}"


def test_bad_windows_and_foreign_deployments_are_refused(make_edge: EdgeFactory) -> None:
    edge = make_edge(MODELYARD_ENGINE="simulated")
    for window in ("0", "10081", "x"):
        answer = edge.client.get(f"{BASE}/inference/metrics?window_minutes={window}", headers=edge.auth)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "INVALID_REQUEST"
    missing = edge.client.get(f"{BASE}/deployments/dep_{'a' * 32}/metrics", headers=edge.auth)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "INSTANCE_NOT_FOUND"
    assert edge.client.get(f"{BASE}/inference/metrics").json()["error"]["code"] == "API_KEY_REQUIRED"
