"""Webhooks end to end on the embedded default: a real receiver on loopback verifies every delivery.

A deployment goes active, scales, degrades, recovers and misses an SLA target; its
subscriber gets each event once, in order, signed both ways. A failing receiver gets its
retries in order while other deployments are not held; one that never recovers ends in the
dead letters, which a re-drive sends once it answers again.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from modelyard.adapters.keygen import MANAGEMENT_PREFIX, new_secret
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.deployments.events import SlaMetric
from modelyard.domain.deployments.service import (
    MeterMinute,
    OnDeployment,
    ReplicaCommand,
    SlaObservation,
    WithCapacity,
    WithReason,
)
from modelyard.domain.keys.aggregate import KeyKind
from modelyard.domain.keys.service import IssueKey
from modelyard.domain.shared import ids
from modelyard.domain.shared.money import format_usd, parse_usd

from .conftest import Receiver, Yard, YardFactory

EVERY = [
    "deployment.active",
    "deployment.degraded",
    "deployment.sla_breach",
    "deployment.recovered",
    "deployment.scaled",
]


def _now() -> datetime:
    return datetime.now(UTC)


def subscribe(yard: Yard, path: str, url: str, events: list[str]) -> dict[str, Any]:
    answer = yard.client.post(path, json={"url": url, "events": events}, headers=yard.auth)
    assert answer.status_code == 201, answer.text
    webhook: dict[str, Any] = answer.json()["data"]["webhook"]
    return webhook


def activate(yard: Yard, deployment: UUID) -> None:
    services = yard.core.services.deployments
    replica = ReplicaCommand(deployment_id=deployment, replica="r1", base_url="http://127.0.0.1:9", at=_now())
    services.start_replica(replica)
    services.activate(OnDeployment(deployment_id=deployment, at=_now()))


def scale(yard: Yard, deployment: UUID, capacity: int) -> None:
    services = yard.core.services.deployments
    services.request_scale(WithCapacity(deployment_id=deployment, capacity=capacity, at=_now()))
    services.finish_scale(WithCapacity(deployment_id=deployment, capacity=capacity, at=_now()))


def deliveries(yard: Yard, deployment: UUID, webhook: str, status: str | None = None) -> list[dict[str, Any]]:
    query = f"?status={status}" if status else ""
    path = f"/api/v1/public/deployments/{ids.deployment_ref(deployment)}/webhooks/{webhook}/deliveries{query}"
    answer = yard.client.get(path, headers=yard.auth)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["data"]["deliveries"]
    return found


def wait_status(yard: Yard, deployment: UUID, webhook: str, status: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while len(rows := deliveries(yard, deployment, webhook, status)) < count:
        assert time.monotonic() < deadline, f"never {count} {status}: {deliveries(yard, deployment, webhook)}"
        time.sleep(0.05)
    return rows


def test_a_lifecycle_arrives_once_in_order_and_signed(yard: Yard, receiver: Receiver) -> None:
    deployment = yard.provision()
    dep, inst = ids.deployment_ref(deployment), ids.instance_ref(deployment)
    every = subscribe(yard, f"/api/v1/public/deployments/{dep}/webhooks", receiver.url, EVERY)
    # The first dialect's route, with the instance's id: the same deployment.
    scaled_only = subscribe(yard, f"/v1/instances/{inst}/webhooks", receiver.url, ["deployment.scaled"])
    assert every["secret"].startswith("whsec_")
    assert every["secret"] != scaled_only["secret"]
    services = yard.core.services.deployments
    activate(yard, deployment)
    scale(yard, deployment, 2)
    services.degrade(WithReason(deployment_id=deployment, reason="replica r2 lost", at=_now()))
    services.recover(OnDeployment(deployment_id=deployment, at=_now()))
    breach = SlaObservation(
        deployment_id=deployment, metric=SlaMetric.TTFT_MS, value=900.0, target=500.0, at=_now()
    )
    services.record_sla_breach(breach)

    got = receiver.wait_for(6)
    time.sleep(0.3)  # anything more (a duplicate) would arrive now
    assert len(receiver.received) == 6
    mine = [r for r in got if r.json["data"]["deployment_id"] == dep]
    secret_of = {every["id"]: every["secret"], scaled_only["id"]: scaled_only["secret"]}
    by_hook: dict[str, list[dict[str, Any]]] = {}
    for request in mine:
        hook = "wh_" + request.headers["webhook-id"].rsplit("_", 1)[1]
        body = request.verify(secret_of[hook])
        assert body["id"] == request.headers["webhook-id"]
        assert body["data"]["instance_id"] == inst
        by_hook.setdefault(hook, []).append(body)
    by_every = [r for r in mine if r.headers["webhook-id"].endswith(every["id"][3:])]
    kinds = [b["type"] for b in by_hook[every["id"]]]
    assert kinds == [
        "deployment.active",
        "deployment.scaled",
        "deployment.degraded",
        "deployment.recovered",
        "deployment.sla_breach",
    ]
    assert [b["type"] for b in by_hook[scaled_only["id"]]] == ["deployment.scaled"]
    assert by_hook[every["id"]][1]["data"]["replicas"] == 2
    assert by_hook[every["id"]][2]["data"]["reason"] == "replica r2 lost"
    sla = by_hook[every["id"]][4]["data"]
    assert (sla["metric"], sla["value"], sla["target"]) == ("ttft_ms", 900.0, 500.0)
    # Every delivery once: no webhook-id twice.
    assert len({r.headers["webhook-id"] for r in got}) == 6
    # A signature by another secret does not verify.
    with pytest.raises(WebhookVerificationError):
        Webhook(scaled_only["secret"]).verify(by_every[0].body, by_every[0].headers)
    listed = yard.client.get(f"/v1/instances/{inst}/webhooks", headers=yard.auth).json()["data"]
    assert listed["count"] == 2
    assert all(w["secret"] is None for w in listed["webhooks"])
    shown = deliveries(yard, deployment, every["id"], "delivered")
    assert [d["event"] for d in reversed(shown)] == kinds
    assert all(len(d["attempts"]) == 1 and d["attempts"][0]["status_code"] == 200 for d in shown)


def test_retries_keep_order_and_hold_only_their_deployment(
    make_yard: YardFactory, receiver: Receiver
) -> None:
    # Tries 0.3 s apart, ten of them: the first event is retried while the test looks on.
    yard = make_yard(MODELYARD_WEBHOOK_RETRY_SCHEDULE=",".join(["0.3"] * 9))
    slow, other = yard.provision(), yard.provision()
    slow_url = receiver.url + "/slow"
    hook = subscribe(yard, f"/api/v1/public/deployments/{ids.deployment_ref(slow)}/webhooks", slow_url, EVERY)
    subscribe(yard, f"/api/v1/public/deployments/{ids.deployment_ref(other)}/webhooks", receiver.url, EVERY)
    # The slow deployment's receiver refuses until the test says otherwise.
    receiver.status_of_path["/hooks/slow"] = 500
    activate(yard, slow)
    scale(yard, slow, 2)  # must wait behind the active event
    deadline = time.monotonic() + 10
    while not any(r.json["type"] == "deployment.active" for r in receiver.received):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    activate(yard, other)  # not held by the slow deployment's retries
    got = receiver.wait_for(1)
    assert got[0].json["data"]["deployment_id"] == ids.deployment_ref(other)
    assert all(r.json["type"] != "deployment.scaled" for r in receiver.received)
    time.sleep(0.5)  # a few more refused tries of the active event
    assert all(r.json["type"] != "deployment.scaled" for r in receiver.received)
    with receiver.lock:
        receiver.status_of_path.clear()
    got = receiver.wait_for(3)
    slow_ones = [r.json for r in got if r.json["data"]["deployment_id"] == ids.deployment_ref(slow)]
    assert [b["type"] for b in slow_ones] == ["deployment.active", "deployment.scaled"]
    # The scaled event was not sent at all while the active one was being retried.
    sent = [
        r.json["type"]
        for r in receiver.received
        if r.json["data"]["deployment_id"] == ids.deployment_ref(slow)
    ]
    first_scaled = sent.index("deployment.scaled")
    assert all(kind == "deployment.active" for kind in sent[:first_scaled])
    assert sent[first_scaled - 1] == "deployment.active"
    active = next(d for d in deliveries(yard, slow, hook["id"]) if d["event"] == "deployment.active")
    assert active["status"] == "delivered"
    codes = [a["status_code"] for a in active["attempts"]]
    assert codes[-1] == 200
    assert set(codes[:-1]) == {500}
    assert len(codes) >= 2


def test_dead_letters_then_redrive(yard: Yard, receiver: Receiver) -> None:
    deployment = yard.provision()
    dep = ids.deployment_ref(deployment)
    hook = subscribe(yard, f"/api/v1/public/deployments/{dep}/webhooks", receiver.url, EVERY)
    receiver.default_status = 503
    activate(yard, deployment)
    scale(yard, deployment, 2)
    dead = wait_status(yard, deployment, hook["id"], "dead", 2)
    # Four tries each (the schedule's three pauses), every one recorded, in event order.
    assert [d["event"] for d in reversed(dead)] == ["deployment.active", "deployment.scaled"]
    assert all([a["status_code"] for a in d["attempts"]] == [503] * 4 for d in dead)
    receiver.default_status = 200
    answer = yard.client.post(
        f"/api/v1/public/deployments/{dep}/webhooks/{hook['id']}/redrive", headers=yard.auth
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["redriven"] == 2
    got = receiver.wait_for(2)
    assert [r.verify(hook["secret"])["type"] for r in got] == ["deployment.active", "deployment.scaled"]
    done = wait_status(yard, deployment, hook["id"], "delivered", 2)
    assert all(len(d["attempts"]) == 5 and d["attempts"][-1]["status_code"] == 200 for d in done)


def test_a_4xx_is_final_at_once(yard: Yard, receiver: Receiver) -> None:
    deployment = yard.provision()
    dep = ids.deployment_ref(deployment)
    hook = subscribe(yard, f"/api/v1/public/deployments/{dep}/webhooks", receiver.url, EVERY)
    receiver.default_status = 410
    activate(yard, deployment)
    dead = wait_status(yard, deployment, hook["id"], "dead", 1)
    assert [a["status_code"] for a in dead[0]["attempts"]] == [410]


def test_rotation_signs_with_both_secrets_for_the_overlap(yard: Yard, receiver: Receiver) -> None:
    deployment = yard.provision()
    dep = ids.deployment_ref(deployment)
    hook = subscribe(yard, f"/api/v1/public/deployments/{dep}/webhooks", receiver.url, EVERY)
    answer = yard.client.post(
        f"/api/v1/public/deployments/{dep}/webhooks/{hook['id']}/rotate-secret", headers=yard.auth
    )
    assert answer.status_code == 200, answer.text
    new = answer.json()["data"]["webhook"]["secret"]
    assert new.startswith("whsec_")
    assert new != hook["secret"]
    activate(yard, deployment)
    (got,) = receiver.wait_for(1)
    got.verify(new)
    Webhook(hook["secret"]).verify(got.body, got.headers)  # the old one still verifies


def test_removed_subscriptions_get_nothing(yard: Yard, receiver: Receiver) -> None:
    deployment = yard.provision()
    dep = ids.deployment_ref(deployment)
    kept = subscribe(yard, f"/api/v1/public/deployments/{dep}/webhooks", receiver.url, EVERY)
    gone = subscribe(yard, f"/api/v1/public/deployments/{dep}/webhooks", receiver.url + "/gone", EVERY)
    removed = yard.client.delete(f"/api/v1/public/deployments/{dep}/webhooks/{gone['id']}", headers=yard.auth)
    assert removed.status_code == 200, removed.text
    assert removed.json()["data"]["webhook"]["status"] == "removed"
    activate(yard, deployment)
    (got,) = receiver.wait_for(1)
    got.verify(kept["secret"])
    time.sleep(0.3)
    assert len(receiver.received) == 1
    again = yard.client.delete(f"/api/v1/public/deployments/{dep}/webhooks/{gone['id']}", headers=yard.auth)
    assert again.status_code == 400


def test_refused_destinations_and_bad_requests(make_yard: YardFactory, tmp_path: Path) -> None:
    yard = make_yard(MODELYARD_WEBHOOK_ALLOWED_NETWORKS="")
    dep = ids.deployment_ref(yard.provision())
    path = f"/api/v1/public/deployments/{dep}/webhooks"
    for url in (
        "http://127.0.0.1:9/x",
        "http://10.1.2.3/x",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
    ):
        answer = yard.client.post(path, json={"url": url, "events": EVERY}, headers=yard.auth)
        assert answer.status_code == 400, (url, answer.text)
        assert answer.json()["error"]["code"] == "INVALID_REQUEST"
    bad = [
        {"url": "ftp://example.com/x", "events": EVERY},
        {"url": "https://example.com/x", "events": ["deployment.deleted"]},
        {"url": "https://example.com/x", "events": []},
        {"url": "https://example.com/x"},
        {"url": "https://example.com/x", "events": EVERY, "extra": 1},
    ]
    for body in bad:
        answer = yard.client.post(path, json=body, headers=yard.auth)
        assert answer.status_code == 400, (body, answer.text)
    missing = yard.client.post(
        "/api/v1/public/deployments/dep_" + "0" * 32 + "/webhooks",
        json={"url": "https://example.com/x", "events": EVERY},
        headers=yard.auth,
    )
    assert missing.status_code == 404
    nothing = yard.client.get(f"{path}/wh_{'0' * 32}/deliveries", headers=yard.auth)
    assert nothing.status_code == 404
    assert nothing.json()["error"]["code"] == "WEBHOOK_NOT_FOUND"
    assert yard.client.get(path).status_code == 401
    # Nothing was recorded for the refused requests.
    assert yard.client.get(path, headers=yard.auth).json()["data"]["count"] == 0


def test_the_secret_is_never_in_the_history(yard: Yard, receiver: Receiver, tmp_path: Path) -> None:
    dep = ids.deployment_ref(yard.provision())
    hook = subscribe(yard, f"/api/v1/public/deployments/{dep}/webhooks", receiver.url, EVERY)
    secret = hook["secret"].encode()
    stored = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("events.sqlite3*"))
    assert b"WebhookSubscribed" in stored or b"webhooks.aggregate" in stored
    assert secret not in stored


def test_account_events_name_the_balance_and_the_stopped_deployments(
    make_yard: YardFactory, receiver: Receiver
) -> None:
    yard = make_yard(MODELYARD_WEBHOOK_CREDITS_LOW_USD="0.0029")
    services = yard.core.services
    # A second account with credit for about one minute of a small deployment.
    now = _now()
    poor = services.accounts.open_account(OpenAccount(name="poor", plan="free", at=now)).id
    services.accounts.add_credits(AddCredits(account_id=poor, amount=3_000, at=now))
    secret, digest, display = new_secret(MANAGEMENT_PREFIX)
    issue = IssueKey(account_id=poor, kind=KeyKind.MANAGEMENT, secret_hash=digest, display=display, at=now)
    services.keys.issue(issue)
    auth = {"Authorization": f"Bearer {secret}"}
    deadline = time.monotonic() + 10
    while (
        answer := yard.client.post("/v1/provision", json={"model": "smollm2-135m"}, headers=auth)
    ).status_code == 401:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert answer.status_code == 201, answer.text
    deployment = ids.parse_deployment_id(answer.json()["data"]["instance"]["id"])
    dep = ids.deployment_ref(deployment)
    events = ["deployment.active", "account.credits_low", "account.credits_exhausted"]
    answer = yard.client.post(
        f"/api/v1/public/deployments/{dep}/webhooks",
        json={"url": receiver.url, "events": events},
        headers=auth,
    )
    assert answer.status_code == 201, answer.text
    hook = answer.json()["data"]["webhook"]
    activate(yard, deployment)
    start = _now().replace(second=0, microsecond=0)
    for minute in (start, start + timedelta(minutes=1)):
        meter = MeterMinute(deployment_id=deployment, minute=minute, at=minute + timedelta(minutes=1))
        services.deployments.meter(meter)
    got = receiver.wait_for(3)
    time.sleep(0.3)
    bodies = [r.verify(hook["secret"]) for r in receiver.received]
    # The account's events in their order (a deployment's and an account's are not ordered
    # against each other: each has its own queue).
    assert sorted(b["type"] for b in bodies) == sorted(events)
    account_events = [b for b in bodies if b["type"].startswith("account.")]
    assert [b["type"] for b in account_events] == events[1:]
    low, exhausted = account_events[0]["data"], account_events[1]["data"]
    assert low["account_id"] == ids.public_id(ids.ACCOUNT, poor)
    assert low["threshold_usd"] == format_usd(2_900)
    assert parse_usd(low["balance_usd"]) < 2_900
    assert [d["deployment_id"] for d in exhausted["stopped_deployments"]] == [dep]
    assert len(got) == 3


def test_a_slow_receiver_holds_only_its_own_deployment(make_yard: YardFactory, receiver: Receiver) -> None:
    # Tries time out after 1 s; the slow path answers after 3 s.
    yard = make_yard(MODELYARD_WEBHOOK_TIMEOUT_S="1", MODELYARD_WEBHOOK_RETRY_SCHEDULE="5")
    slow, fast = yard.provision(), yard.provision()
    subscribe(
        yard, f"/api/v1/public/deployments/{ids.deployment_ref(slow)}/webhooks", receiver.url + "/slow", EVERY
    )
    subscribe(yard, f"/api/v1/public/deployments/{ids.deployment_ref(fast)}/webhooks", receiver.url, EVERY)
    receiver.path_delay_s["/hooks/slow"] = 3.0
    activate(yard, slow)
    deadline = time.monotonic() + 10
    while not receiver.in_flight:
        assert time.monotonic() < deadline, "the slow delivery never started"
        time.sleep(0.01)
    started = time.monotonic()
    activate(yard, fast)
    while not (got := [r for r in receiver.delivered() if r.path == "/hooks"]):
        assert time.monotonic() - started < 10, "the fast deployment's delivery never came"
        time.sleep(0.01)
    waited = time.monotonic() - started
    # The fast deployment's delivery is not queued behind the slow one (which is still
    # being answered, then times out and waits 5 s for its retry).
    assert got[0].json["data"]["deployment_id"] == ids.deployment_ref(fast)
    assert waited < 3.0, waited
    assert [r.path for r in receiver.received].count("/hooks/slow") == 1
