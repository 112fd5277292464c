"""The first document's own example, ``llama3.1-8b`` on a CPU-only host, is answered at once
with the reason (PROVISIONING_FAILED, 502), and nothing is recorded."""

from __future__ import annotations

from .conftest import EdgeFactory


def test_a_gpu_model_on_a_cpu_only_host_is_refused_at_once(make_edge: EdgeFactory) -> None:
    edge = make_edge(MODELYARD_GPU_TYPES="none")
    before = edge.core.store.recorder.max_notification_id()
    answer = edge.client.post(
        "/v1/provision", json={"model": "llama3.1-8b", "capacity": 1}, headers=edge.auth
    )
    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert error["code"] == "PROVISIONING_FAILED"
    assert "needs a GPU" in error["message"]
    assert "smollm2-135m" in error["message"]  # what this host can serve instead
    assert edge.core.store.recorder.max_notification_id() == before
    assert edge.client.get("/v1/instances", headers=edge.auth).json()["data"]["count"] == 0
    served = edge.client.post("/v1/provision", json={"model": "smollm2-135m"}, headers=edge.auth)
    assert served.status_code == 201, served.text


def test_a_region_without_capacity_is_refused_at_once(make_edge: EdgeFactory) -> None:
    edge = make_edge(MODELYARD_ENGINE="simulated", MODELYARD_REGIONS="nyc2")
    auth = edge.auth
    far = edge.client.post(
        "/api/v1/public/deployments",
        json={"name": "far", "model_id": "llama3.1-8b", "gpu_type": "h100", "region": "tor1"},
        headers=auth,
    )
    assert far.status_code == 502, far.text
    assert far.json()["error"]["code"] == "PROVISIONING_FAILED"
    assert "tor1" in far.json()["error"]["message"]
    near = edge.client.post(
        "/api/v1/public/deployments",
        json={"name": "near", "model_id": "llama3.1-8b", "gpu_type": "h100", "region": "nyc2"},
        headers=auth,
    )
    assert near.status_code == 201, near.text
