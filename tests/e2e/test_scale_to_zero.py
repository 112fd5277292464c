"""Scale-to-zero through ``modelyard serve``: idle replicas are released, billing stops, and the
next request cold-starts the deployment and is held until it gets its answer.

Run on the simulated engine and on real llama.cpp (``smollm2-135m``): the deployment is
created through the second dialect and its autoscaling policy set with ``PATCH
…/scaling``; the test reads the server's own event store to see each step. The server's
autoscaler polls every half second. At the end, reconciliation finds the ledger's charges
equal to the replica-seconds served.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from modelyard.adapters.eventstore.env import store_env
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.aggregate import Deployment, project_deployment
from modelyard.domain.deployments.metering import due_minutes, meter_minute
from modelyard.domain.shared import ids
from modelyard.domain.shared.events import DomainEvent
from modelyard.domain.shared.store import Store
from modelyard.settings import load_settings

from .conftest import Yard, free_port
from .test_five_steps import poll_until

pytestmark = [pytest.mark.e2e]
IDLE = {"min_replicas": 1, "max_replicas": 1, "scale_to_zero": True, "idle_timeout_seconds": 2}
# Set once it sleeps, so that it does not go back to sleep while the test looks at it awake.
PATIENT = {**IDLE, "idle_timeout_seconds": 600}


def _serve(tmp_path: Path, engine: str, hold_s: str) -> Iterator[Yard]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "POSTGRES_"))}
    env |= {
        "MODELYARD_DATA_DIR": str(tmp_path / "data"),
        "MODELYARD_ENGINE": engine,
        "MODELYARD_AUTOSCALE_INTERVAL_S": "0.5",
        "MODELYARD_COLD_START_WAIT_S": hold_s,
    }
    yard = Yard(env=env, cwd=tmp_path, urls=[])
    yard.fund("5.00")
    yard.start("serve", port=free_port())
    yield yard
    yard.stop()


@pytest.fixture(params=["simulated", pytest.param("auto", marks=pytest.mark.slow, id="llamacpp")])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Yard]:
    """``modelyard serve`` on one engine, holding cold-started requests up to two minutes."""
    yield from _serve(tmp_path, str(request.param), "120")


@pytest.fixture
def impatient(tmp_path: Path) -> Iterator[Yard]:
    """The simulated engine, holding a cold-started request not at all (always the 503)."""
    yield from _serve(tmp_path, "simulated", "0")


class Events:
    """The server's event store, read (and written through the deployments service) from the test."""

    def __init__(self, yard: Yard) -> None:
        self.store = Store(env=store_env(load_settings(yard.env)))

    def of(self, instance_id: str) -> list[DomainEvent]:
        return list(self.store.events.get(ids.parse_deployment_id(instance_id)))

    def deployment(self, instance_id: str) -> Deployment:
        found = project_deployment(None, self.of(instance_id))
        assert found is not None
        return found

    def close(self) -> None:
        self.store.close()


def _running(yard: Yard, client: httpx.Client) -> dict[str, Any]:
    """A deployment created through the second dialect, as the first shows it once running
    (both read the same deployment; that view carries the key until its first use)."""
    body = {"name": "sleepy", "model_id": "smollm2-135m", "replicas": 1}
    created = client.post("/api/v1/public/deployments", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["id"].startswith("dep_")
    return poll_until(client, created.json()["id"], "running")


def _set_policy(client: httpx.Client, deployment_id: str, policy: dict[str, Any]) -> None:
    """The autoscaling policy, through the second dialect's route."""
    answer = client.patch(f"/api/v1/public/deployments/{deployment_id}/scaling", json=policy)
    assert answer.status_code == 200, answer.text


def _billed_after(deployment: Deployment, since: datetime) -> list[datetime]:
    """The minutes at or after ``since``'s minute that would be charged anything, metered an hour on."""
    later = since + timedelta(hours=1)
    charged = []
    for minute in due_minutes(deployment, later):
        metered = meter_minute(deployment, minute, later)
        if metered is not None and metered.amount > 0 and minute >= since.replace(second=0, microsecond=0):
            charged.append(minute)
    return charged


def test_idle_goes_to_zero_billing_stops_and_a_request_cold_starts_it(served: Yard) -> None:
    url = served.urls[0]
    events = Events(served)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {served.key}"}, timeout=120) as client:
        running = _running(served, client)
        instance_id, key = running["id"], running["api_key"]
        sdk = openai.OpenAI(base_url=running["openai_base_url"], api_key=key, timeout=180)
        first = sdk.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Hi"}], max_tokens=8
        )
        assert first.choices[0].message.content

        _set_policy(client, instance_id, IDLE)
        asleep = poll_until(client, instance_id, "scaled_to_zero", timeout=60)
        assert asleep["capacity"] == 1
        history = events.of(instance_id)
        (zero,) = [e for e in history if isinstance(e, ev.ScaledToZero)]
        assert "no request for" in zero.reason
        assert "idle timeout 2 s" in zero.reason
        # Billing stopped with the event: nothing billable, no minute after it charged anything.
        idle = events.deployment(instance_id)
        assert not idle.billable
        assert all(s.end is not None and s.end <= zero.timestamp for s in idle.segments)
        time.sleep(2)
        assert _billed_after(events.deployment(instance_id), zero.timestamp + timedelta(minutes=1)) == []
        assert len(events.of(instance_id)) == len(history)  # idle: no event while it sleeps
        _set_policy(client, instance_id, PATIENT)
        history = events.of(instance_id)

        # The next request wakes it and is held until a replica answers it.
        woken = sdk.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Name a colour."}], max_tokens=8
        )
        assert woken.choices[0].message.content
        assert woken.usage is not None
        assert woken.usage.completion_tokens > 0
        after = events.of(instance_id)[len(history) :]
        kinds = [type(e) for e in after]
        assert kinds[0] is ev.WakeRequested
        assert ev.ReplicaStarted in kinds
        assert ev.DeploymentActivated in kinds
        assert (
            kinds.index(ev.WakeRequested)
            < kinds.index(ev.ReplicaStarted)
            < kinds.index(ev.DeploymentActivated)
        )
        # Billing runs again from the activation.
        awake = events.deployment(instance_id)
        activated = next(e for e in after if isinstance(e, ev.DeploymentActivated))
        assert awake.segments
        assert awake.segments[-1].start >= activated.timestamp.replace(microsecond=0)
        deleted = client.delete(f"/api/v1/public/deployments/{instance_id}")
        assert deleted.status_code == 200, deleted.text
        # The ledger's charges match the replica-seconds its replica events say it served.
        # (Through the minute just settled by the delete: the period ends after it.)
        until = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
        reconciled = client.get("/v1/reconciliation", params={"until": until}).json()["data"]
        (row,) = [r for r in reconciled["deployments"] if r["deployment_id"].endswith(instance_id[5:])]
        assert row["minutes_billed"] > 0, row
        assert not row["flagged"], row
    events.close()


def test_a_request_held_past_the_bound_is_told_to_retry_and_the_wake_stands(impatient: Yard) -> None:
    url = impatient.urls[0]
    events = Events(impatient)
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {impatient.key}"}, timeout=60
    ) as client:
        running = _running(impatient, client)
        instance_id, key = running["id"], running["api_key"]
        _set_policy(client, instance_id, IDLE)
        poll_until(client, instance_id, "scaled_to_zero", timeout=60)
        _set_policy(client, instance_id, PATIENT)
        chat = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}
        inference = {"Authorization": f"Bearer {key}"}
        refused = httpx.post(f"{url}/v1/{instance_id}/v1/chat/completions", json=chat, headers=inference)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "INSTANCE_STARTING"
        assert int(refused.headers["Retry-After"]) > 0
        # Not dropped: the wake it asked for stands, and the deployment comes up for the retry.
        assert any(isinstance(e, ev.WakeRequested) for e in events.of(instance_id))
        poll_until(client, instance_id, "running", timeout=60)
        retried = httpx.post(f"{url}/v1/{instance_id}/v1/chat/completions", json=chat, headers=inference)
        assert retried.status_code == 200, retried.text
        assert retried.json()["choices"][0]["message"]["content"] == "hello there"
        client.delete(f"/v1/instances/{instance_id}")
    events.close()
