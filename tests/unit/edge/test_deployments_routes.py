"""The second dialect's deployment routes over the composition root's API (simulated engine).

Top-level answers with ``dep_`` ids and the second document's statuses, the same
deployments as the first dialect, the same keys and codes (in OpenAI's error shape), and
bad input refused with nothing written.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.service import OnDeployment, SlaObservation
from modelyard.domain.shared import ids

from .conftest import Edge, EdgeFactory

BASE = "/api/v1/public/deployments"
SPEC = {
    "name": "prod-inference",
    "model_id": "llama3.1-8b",
    "gpu_type": "h100",
    "region": "nyc2",
    "replicas": 1,
}


def _edge(make_edge: EdgeFactory) -> Edge:
    return make_edge(MODELYARD_ENGINE="simulated")


def _create(edge: Edge, **fields: Any) -> dict[str, Any]:
    answer = edge.client.post(BASE, json={**SPEC, **fields}, headers=edge.auth)
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _refused(edge: Edge, answer: Any, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}, error  # OpenAI's shape, our codes
    assert error["code"] == code, error
    assert error["message"]
    return str(error["message"])


def test_create_answers_the_second_documents_shape_and_both_dialects_read_it(make_edge: EdgeFactory) -> None:
    edge = _edge(make_edge)
    deployment = _create(edge, preset="speed")
    assert deployment["id"].startswith("dep_")
    assert len(deployment["id"]) == 4 + 32
    assert deployment["status"] == "provisioning"
    assert (deployment["gpu_type"], deployment["region"], deployment["replicas"], deployment["preset"]) == (
        "h100",
        "nyc2",
        1,
        "speed",
    )
    assert deployment["model_id"] == "llama3.1-8b"
    assert deployment["name"] == "prod-inference"
    assert deployment["engine"]["name"] == "simulated"
    assert deployment["endpoint"] is None
    assert deployment["api_key"] is None
    assert deployment["scaling"] == {
        "min_replicas": 1,
        "max_replicas": 1,
        "scale_to_zero": False,
        "idle_timeout_seconds": 300,
    }
    # The first dialect reads the same deployment, as an instance.
    uuid = ids.parse_deployment_id(deployment["id"])
    instance = edge.client.get(f"/v1/instances/{ids.instance_ref(uuid)}", headers=edge.auth)
    assert instance.json()["data"]["instance"]["status"] == "provisioning"
    # And the second reads what the first provisioned.
    made = edge.client.post("/v1/provision", json={"model": "smollm2-135m"}, headers=edge.auth)
    other = ids.parse_deployment_id(made.json()["data"]["instance"]["id"])
    seen = edge.client.get(f"{BASE}/{ids.deployment_ref(other)}", headers=edge.auth).json()
    assert (seen["model_id"], seen["status"], seen["preset"]) == ("smollm2-135m", "provisioning", "balanced")
    listed = edge.client.get(BASE, headers=edge.auth).json()
    assert listed["total"] == 2
    assert [d["id"] for d in listed["deployments"]] == [deployment["id"], ids.deployment_ref(other)]

    edge.bring_up(uuid)
    active = edge.client.get(f"{BASE}/{deployment['id']}", headers=edge.auth).json()
    assert active["status"] == "active"
    assert active["ready_replicas"] == 1
    assert active["endpoint"].endswith(f"{BASE}/{deployment['id']}")
    assert active["api_key"].startswith("auxk_")


def test_each_preset_shows_its_engine_arguments(make_edge: EdgeFactory) -> None:
    edge = make_edge()  # llama.cpp serves smollm2-135m on this host
    shown = {}
    for preset in ("speed", "latency", "cost", "balanced"):
        body = _create(edge, model_id="smollm2-135m", gpu_type=None, region=None, preset=preset)
        assert body["preset"] == preset
        assert body["engine"]["name"] == "llamacpp"
        shown[preset] = body["engine"]["arguments"]
    assert "--draft-tokens" in shown["latency"]
    assert shown["cost"][shown["cost"].index("--kv-cache") + 1] == "q8_0"
    assert int(shown["speed"][shown["speed"].index("--batch") + 1]) > int(
        shown["latency"][shown["latency"].index("--batch") + 1]
    )
    assert len({tuple(args) for args in shown.values()}) == 4


def test_bad_requests_get_their_codes_and_write_nothing(make_edge: EdgeFactory) -> None:
    edge = _edge(make_edge)
    before = edge.core.store.recorder.max_notification_id()
    post = edge.client.post
    cases = [
        (post(BASE, json={**SPEC, "model_id": "gpt-17"}, headers=edge.auth), 400, "INVALID_MODEL"),
        (post(BASE, json={**SPEC, "replicas": 3}, headers=edge.auth), 400, "INVALID_CAPACITY"),
        (post(BASE, json={**SPEC, "preset": "turbo"}, headers=edge.auth), 400, "INVALID_REQUEST"),
        (post(BASE, json={**SPEC, "gpu_type": "a100"}, headers=edge.auth), 400, "INVALID_REQUEST"),
        (post(BASE, json={**SPEC, "region": "mars1"}, headers=edge.auth), 400, "INVALID_REQUEST"),
        (
            post(BASE, json={**SPEC, "model_id": "llama-3.3-70b-instruct"}, headers=edge.auth),
            400,
            "INVALID_REQUEST",
        ),
        (post(BASE, json={**SPEC, "colour": "red"}, headers=edge.auth), 400, "INVALID_REQUEST"),
        (
            post(
                BASE, json={**SPEC, "tier": "shared", "model_id": "llama-3.3-70b-instruct"}, headers=edge.auth
            ),
            400,
            "INVALID_REQUEST",
        ),
        (post(BASE, json=SPEC), 401, "API_KEY_REQUIRED"),
        (post(BASE, json=SPEC, headers={"Authorization": "Bearer auxen_live_nope"}), 401, "INVALID_API_KEY"),
        (edge.client.get(f"{BASE}/dep_{'0' * 32}", headers=edge.auth), 404, "INSTANCE_NOT_FOUND"),
        (edge.client.get(f"{BASE}/nonsense", headers=edge.auth), 404, "INSTANCE_NOT_FOUND"),
    ]
    for answer, status, code in cases:
        _refused(edge, answer, status, code)
    assert "h100 has 80 GiB" in cases[5][0].json()["error"]["message"]
    assert edge.core.store.recorder.max_notification_id() == before
    assert edge.client.get(BASE, headers=edge.auth).json()["total"] == 0


def test_an_idempotent_retry_returns_the_first_deployment(make_edge: EdgeFactory) -> None:
    edge = _edge(make_edge)
    headers = edge.auth | {"Idempotency-Key": "create-1"}
    first = edge.client.post(BASE, json=SPEC, headers=headers)
    again = edge.client.post(BASE, json=SPEC, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert edge.client.get(BASE, headers=edge.auth).json()["total"] == 1
    _refused(
        edge,
        edge.client.post(BASE, json={**SPEC, "replicas": 2}, headers=headers),
        409,
        "IDEMPOTENCY_CONFLICT",
    )


def test_scaling_is_recorded_and_bad_policies_write_nothing(make_edge: EdgeFactory) -> None:
    edge = _edge(make_edge)
    dep = _create(edge)["id"]
    url = f"{BASE}/{dep}/scaling"
    assert edge.client.get(url, headers=edge.auth).json()["max_replicas"] == 1
    policy = {"min_replicas": 1, "max_replicas": 4, "scale_to_zero": True, "idle_timeout_seconds": 300}
    answer = edge.client.patch(url, json=policy, headers=edge.auth)
    assert answer.status_code == 200, answer.text
    assert {k: answer.json()[k] for k in policy} == policy
    partial = edge.client.patch(url, json={"idle_timeout_seconds": 600}, headers=edge.auth).json()
    assert (partial["max_replicas"], partial["idle_timeout_seconds"]) == (4, 600)
    uuid = ids.parse_deployment_id(dep)
    assert edge.core.services.deployments.get(uuid).autoscaling == ev.Autoscaling(
        min_replicas=1, max_replicas=4, scale_to_zero=True, idle_timeout_seconds=600
    )

    before = edge.core.store.recorder.max_notification_id()
    bad = [
        ({"min_replicas": 4, "max_replicas": 2}, "more than max_replicas"),
        ({"max_replicas": 9}, "max_replicas"),
        ({"min_replicas": -1}, "min_replicas"),
        ({"idle_timeout_seconds": -5}, "idle_timeout_seconds"),
        ({"idle_timeout_seconds": 10**12}, "idle_timeout_seconds"),
        ({"min_replicas": 0, "scale_to_zero": False}, "scale_to_zero"),
    ]
    for body, said in bad:
        message = _refused(edge, edge.client.patch(url, json=body, headers=edge.auth), 400, "INVALID_REQUEST")
        assert said in message
    _refused(edge, edge.client.patch(url, json={"replicas": 4}, headers=edge.auth), 400, "INVALID_REQUEST")
    shared = edge.client.post(
        "/v1/provision", json={"model": "smollm2-135m", "tier": "shared"}, headers=edge.auth
    ).json()["data"]["instance"]["id"]
    message = _refused(
        edge,
        edge.client.patch(f"{BASE}/{shared}/scaling", json=policy, headers=edge.auth),
        400,
        "INVALID_CAPACITY",
    )
    assert "shared" in message
    after_shared = edge.core.store.recorder.max_notification_id()
    assert after_shared > before  # the shared provision itself
    edge.client.delete(f"{BASE}/{dep}", headers=edge.auth)
    torn = edge.core.store.recorder.max_notification_id()
    _refused(edge, edge.client.patch(url, json=policy, headers=edge.auth), 409, "ILLEGAL_TRANSITION")
    _refused(edge, edge.client.patch(f"{BASE}/{dep}/sla", json={"ttft_target_ms": 5}, headers=edge.auth), 409,
             "ILLEGAL_TRANSITION")  # fmt: skip
    assert edge.core.store.recorder.max_notification_id() == torn


def test_sla_targets_and_breach_history(make_edge: EdgeFactory) -> None:
    edge = _edge(make_edge)
    dep = _create(edge)["id"]
    uuid = ids.parse_deployment_id(dep)
    url = f"{BASE}/{dep}/sla"
    targets = {"ttft_target_ms": 500, "throughput_target_tps": 100, "concurrency_limit": 50}
    answer = edge.client.patch(url, json=targets, headers=edge.auth)
    assert answer.status_code == 200, answer.text
    assert {k: answer.json()[k] for k in targets} == targets
    cleared = edge.client.patch(url, json={"concurrency_limit": None}, headers=edge.auth).json()
    assert (cleared["ttft_target_ms"], cleared["concurrency_limit"]) == (500, None)
    before = edge.core.store.recorder.max_notification_id()
    for body in ({"ttft_target_ms": 0}, {"throughput_target_tps": -3}, {"concurrency_limit": 10**9}):
        _refused(edge, edge.client.patch(url, json=body, headers=edge.auth), 400, "INVALID_REQUEST")
    assert edge.core.store.recorder.max_notification_id() == before

    edge.bring_up(uuid)
    now = datetime.now(UTC)
    service = edge.core.services.deployments
    breach = SlaObservation(deployment_id=uuid, metric=ev.SlaMetric.TTFT_MS, value=812.5, target=500, at=now)
    service.record_sla_breach(breach)
    position = service.record_sla_recovery(
        SlaObservation(deployment_id=uuid, metric=ev.SlaMetric.TTFT_MS, at=now)
    )
    deadline = time.monotonic() + 10
    while len(edge.client.get(url, headers=edge.auth).json()["breaches"]) < 2:
        assert time.monotonic() < deadline, position
        time.sleep(0.05)
    history = edge.client.get(url, headers=edge.auth).json()["breaches"]
    assert [(h["metric"], h["kind"], h["value"], h["target"]) for h in history] == [
        ("ttft_ms", "breached", 812.5, 500.0),
        ("ttft_ms", "recovered", None, None),
    ]


def test_delete_tears_down_and_the_deployment_reads_inactive_at_the_end(make_edge: EdgeFactory) -> None:
    edge = _edge(make_edge)
    dep = _create(edge)["id"]
    uuid = ids.parse_deployment_id(dep)
    edge.bring_up(uuid)
    gone = edge.client.delete(f"{BASE}/{dep}", headers=edge.auth)
    assert gone.status_code == 200, gone.text
    assert gone.json()["status"] == "teardown"
    assert gone.json()["api_key"] is None
    edge.core.services.deployments.mark_destroyed(OnDeployment(deployment_id=uuid, at=datetime.now(UTC)))
    edge.wait_for(uuid, "destroyed")
    assert edge.client.get(f"{BASE}/{dep}", headers=edge.auth).json()["status"] == "inactive"
    _refused(edge, edge.client.delete(f"{BASE}/{dep}", headers=edge.auth), 409, "ILLEGAL_TRANSITION")
    # The first dialect no longer shows it: destroyed instances are not found there.
    refused_v1 = edge.client.get(f"/v1/instances/{ids.instance_ref(uuid)}", headers=edge.auth)
    assert refused_v1.status_code == 404


def test_the_openapi_document_covers_every_route(make_edge: EdgeFactory) -> None:
    edge = _edge(make_edge)
    paths = edge.client.get("/docs/openapi.json").json()["paths"]
    expected = {
        BASE: {"get", "post"},
        BASE + "/{deployment_id}": {"get", "delete"},
        BASE + "/{deployment_id}/scaling": {"get", "patch"},
        BASE + "/{deployment_id}/sla": {"get", "patch"},
        BASE + "/{deployment_id}/chat/completions": {"post"},
    }
    for path, methods in expected.items():
        assert path in paths, sorted(paths)
        assert methods <= set(paths[path]), (path, paths[path].keys())


def test_hostile_bodies_are_refused_before_decoding(make_edge: EdgeFactory) -> None:
    edge = _edge(make_edge)
    dep = _create(edge)["id"]
    deep = b"[" * 10_000 + b"]" * 10_000
    headers = edge.auth | {"content-type": "application/json"}
    before = edge.core.store.recorder.max_notification_id()
    for method, url in (("POST", BASE), ("PATCH", f"{BASE}/{dep}/scaling"), ("PATCH", f"{BASE}/{dep}/sla")):
        answer = edge.client.request(method, url, content=deep, headers=headers)
        _refused(edge, answer, 400, "INVALID_REQUEST")
        answer = edge.client.request(method, url, content=b"{oops", headers=headers)
        _refused(edge, answer, 400, "INVALID_REQUEST")
    assert edge.core.store.recorder.max_notification_id() == before
    edge.bring_up(ids.parse_deployment_id(dep))
    chat = edge.client.post(f"{BASE}/{dep}/chat/completions", content=deep, headers=headers)
    _refused(edge, chat, 400, "INVALID_REQUEST")
