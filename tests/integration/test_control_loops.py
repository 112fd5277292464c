"""The control loops on the simulated engine: the autoscaler (load raises the queue, replicas
follow up and back down; a wake after zero starts fresh replicas) and the SLA evaluator (a
slow TTFT is a breach with its figures, a faster one a recovery).

A real control plane in one test process: an SQLite event store, views kept up by the
projection runner, the reconciler starting simulated replica processes, and the autoscaler
polling their Prometheus metrics. Client threads load the replicas over HTTP; every step
the autoscaler takes must be an event with its reason, inside the policy's bounds, and the
reconciler must make the replicas follow.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from modelyard.adapters.eventlog.sources import NotificationLogSource
from modelyard.adapters.placement.local import LocalPlacement
from modelyard.adapters.views.db import SqliteViews
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.autoscaling import Tuning
from modelyard.domain.deployments.service import (
    OnDeployment,
    Provision,
    RequestDeployment,
    SetAutoscaling,
    SetSla,
    WithReason,
)
from modelyard.domain.services import Services
from modelyard.domain.shared.events import DomainEvent
from modelyard.domain.shared.store import Store
from modelyard.projections.deployments.queries import deployment_state, serving_replicas
from modelyard.projections.registry import all_projections
from modelyard.settings import load_settings
from modelyard.workers.autoscaler import Autoscaler
from modelyard.workers.projection_runner import ProjectionRunner
from modelyard.workers.reconciler import Reconciler
from modelyard.workers.sla import SlaEvaluator

pytestmark = pytest.mark.integration

POLICY = ev.Autoscaling(min_replicas=1, max_replicas=4)
# Two requests in flight per replica: twelve clients want six replicas, more than max_replicas.
TUNING = Tuning(target_concurrency=2, down_window_s=2)
CLIENTS = 12
# Twenty words at 20 tokens/s after a 200 ms TTFT: each request is in a replica about 1.2 s.
PROMPT = " ".join(f"w{i}" for i in range(20))


class ControlPlane:
    """Store, views, reconciler and autoscaler of one host, stepped by the test."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.store = Store(
            env={
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(tmp / "events.sqlite3"),
                "CREATE_TABLE": "y",
            }
        )
        self.services = Services.over(self.store)
        self.views = SqliteViews(tmp / "views.sqlite3")
        self.views.ensure([statement for p in all_projections() for statement in p.schema])
        self.runner = ProjectionRunner(
            self.views, NotificationLogSource(self.store.recorder), all_projections()
        )
        self.reconciler = self.reconciler_with(ttft_ms=200)
        self.autoscaler = Autoscaler(self.services.deployments, self.views, TUNING)
        self.sla = SlaEvaluator(self.services.deployments, self.views)

    def reconciler_with(self, *, ttft_ms: int) -> Reconciler:
        """A reconciler (a server process) whose simulated replicas take ``ttft_ms`` to a first token."""
        settings = load_settings(
            {
                "MODELYARD_ENGINE": "simulated",
                "MODELYARD_DATA_DIR": str(self.tmp),
                "MODELYARD_SIMULATED_TTFT_MS": str(ttft_ms),
                "MODELYARD_SIMULATED_TOKENS_PER_S": "20",
            }
        )
        self.placement = LocalPlacement(self.tmp / "replicas", gpu=False)
        return Reconciler(settings, self.services.deployments, self.views, self.placement)

    def step(self) -> None:
        """One pass of each worker, the views caught up between them."""
        self.runner.run_until_idle()
        self.reconciler.run_once()
        self.runner.run_until_idle()
        self.autoscaler.run_once()
        self.runner.run_until_idle()

    def state(self, dep: UUID) -> str:
        with self.views.read() as tx:
            found = deployment_state(tx, dep)
        assert found is not None
        return found.state

    def history(self, dep: UUID) -> list[DomainEvent]:
        return list(self.store.events.get(dep))

    def close(self) -> None:
        self.autoscaler.close()
        self.sla.close()
        self.reconciler.release()
        self.runner.close()
        self.store.close()


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    made = ControlPlane(tmp_path)
    yield made
    made.close()


def _running_deployment(plane: ControlPlane, policy: ev.Autoscaling | None = POLICY) -> UUID:
    at = datetime.now(UTC)
    account = plane.services.accounts.open_account(OpenAccount(name="autoscaled", at=at)).id
    plane.services.accounts.add_credits(AddCredits(account_id=account, amount=50_000_000, at=at))
    request = RequestDeployment(account_id=account, model="smollm2-135m", capacity=1, at=at)
    dep = plane.services.deployments.provision(
        Provision(deployment=request, key_hash="h", key_display="k")
    ).id
    if policy is not None:
        plane.services.deployments.set_autoscaling(SetAutoscaling(deployment_id=dep, policy=policy, at=at))
    for _ in range(20):
        plane.step()
        if plane.state(dep) == "running":
            return dep
    raise AssertionError(f"{dep} did not start: {plane.state(dep)}")


class Load:
    """Client threads, each sending one request after another to a replica the views route to."""

    def __init__(self, plane: ControlPlane, dep: UUID) -> None:
        self._plane, self._dep = plane, dep
        self._stop = threading.Event()
        self.answered = 0
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]

    def _client(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                with self._plane.views.read() as tx:
                    routes = serving_replicas(tx, self._dep)
                if not routes:
                    time.sleep(0.05)
                    continue
                route = random.choice(routes)
                body = {"model": "m", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64}
                try:
                    response = client.post(
                        f"{route.base_url}/v1/chat/completions",
                        json=body,
                        headers={"Authorization": f"Bearer {route.token}"},
                    )
                except httpx.HTTPError:
                    continue  # a replica scaled away under the request: the next goes elsewhere
                if response.status_code == 200:
                    self.answered += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def _step_until(plane: ControlPlane, done: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        plane.step()
        if callable(done) and done():
            return
        time.sleep(0.3)
    raise AssertionError("the control plane did not get there in time")


def _scales(plane: ControlPlane, dep: UUID) -> list[DomainEvent]:
    kinds = (ev.ScaleRequested, ev.ScaledTo)
    return [e for e in plane.history(dep) if isinstance(e, kinds)]


def test_queue_depth_scales_up_within_max_and_back_down_when_load_stops(plane: ControlPlane) -> None:
    dep = _running_deployment(plane)
    quiet = list(_scales(plane, dep))
    plane.step()
    assert _scales(plane, dep) == quiet == []  # nothing in flight, at min_replicas: nothing to do

    with Load(plane, dep) as load:
        began = datetime.now(UTC)
        _step_until(plane, lambda: len(plane.reconciler.replicas.get(dep, {})) == 4, 60)
        up = [e for e in _scales(plane, dep) if isinstance(e, ev.ScaleRequested)]
        # Held for a few more polls at the top: never past max_replicas.
        for _ in range(5):
            plane.step()
            time.sleep(0.3)
        assert len(plane.reconciler.replicas[dep]) == 4
    assert load.answered > 0
    assert up[0].capacity in (2, 4)
    assert "waiting" in up[0].reason
    assert "running on 1 replicas" in up[0].reason
    print(
        f"autoscaler reaction: load start -> ScaleRequested {(up[0].timestamp - began).total_seconds():.2f} s"
    )

    _step_until(
        plane, lambda: len(plane.reconciler.replicas.get(dep, {})) == 1 and plane.state(dep) == "running", 60
    )
    steps = _scales(plane, dep)
    asked = [e.capacity for e in steps if isinstance(e, ev.ScaleRequested)]
    reached = [e.capacity for e in steps if isinstance(e, ev.ScaledTo)]
    assert asked == reached  # the reconciler made every decision happen
    assert max(asked) == 4
    assert asked[-1] == 1
    assert all(1 <= c <= 4 for c in asked)
    downs = [e for e in steps if isinstance(e, ev.ScaleRequested) and e.capacity < 4]
    assert downs
    assert all(e.reason.startswith("scale down") for e in downs[-1:])
    # The replicas scaled away were stopped and their loss recorded as such.
    lost = [e for e in plane.history(dep) if isinstance(e, ev.ReplicaLost)]
    assert len(lost) == 3
    assert all(e.reason == "scaled down" for e in lost)
    with plane.views.read() as tx:
        assert len(serving_replicas(tx, dep)) == 1


def test_a_wake_before_any_pass_stopped_the_idle_replicas_starts_fresh_ones(plane: ControlPlane) -> None:
    dep = _running_deployment(plane)
    (old,) = plane.reconciler.replicas[dep].values()
    at = datetime.now(UTC)
    plane.services.deployments.scale_to_zero(WithReason(deployment_id=dep, reason="idle", at=at))
    plane.services.deployments.wake(OnDeployment(deployment_id=dep, at=at))
    plane.runner.run_until_idle()
    assert plane.state(dep) == "waking"
    plane.reconciler.run_once()  # never saw scaled_to_zero: the released replica is still held
    plane.runner.run_until_idle()
    assert plane.state(dep) == "running"
    (new,) = plane.reconciler.replicas[dep].values()
    assert new.name != old.name
    assert not plane.placement.alive(old)
    with plane.views.read() as tx:
        (route,) = serving_replicas(tx, dep)
    assert route.replica == new.name
    assert (
        httpx.get(f"{route.base_url}/health", headers={"Authorization": f"Bearer {route.token}"}).status_code
        == 200
    )


def _chat(plane: ControlPlane, dep: UUID, times: int) -> None:
    with plane.views.read() as tx:
        (route,) = serving_replicas(tx, dep)
    body = {"model": "m", "messages": [{"role": "user", "content": "one two three four"}]}
    for _ in range(times):
        answer = httpx.post(
            f"{route.base_url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {route.token}"},
            timeout=30,
        )
        assert answer.status_code == 200


def test_a_slow_ttft_is_a_breach_with_its_figures_and_a_faster_one_a_recovery(plane: ControlPlane) -> None:
    plane.reconciler.release()
    plane.reconciler = plane.reconciler_with(ttft_ms=400)
    dep = _running_deployment(plane, policy=None)
    targets = ev.SlaTargets(ttft_target_ms=250, throughput_target_tps=10)
    plane.services.deployments.set_sla(SetSla(deployment_id=dep, targets=targets, at=datetime.now(UTC)))
    plane.runner.run_until_idle()
    assert plane.sla.run_once() == {}  # no request yet: nothing measured, nothing judged

    _chat(plane, dep, 3)
    judged = plane.sla.run_once()
    (breach,) = judged[dep]
    assert breach.breached
    assert breach.metric is ev.SlaMetric.TTFT_MS
    assert 380 <= breach.value < 1000
    assert breach.target == 250
    _chat(plane, dep, 2)
    assert plane.sla.run_once() == {}  # still slow: one breach, not one per window
    (recorded,) = [e for e in plane.history(dep) if isinstance(e, ev.SlaBreached)]
    assert (recorded.metric, recorded.value, recorded.target) == (ev.SlaMetric.TTFT_MS, breach.value, 250.0)

    # The same deployment served by a faster engine (the operator restarts with a new setting).
    plane.reconciler.release()
    plane.reconciler = plane.reconciler_with(ttft_ms=20)
    for _ in range(10):
        plane.step()
        if plane.state(dep) == "running":
            break
    assert plane.state(dep) == "running"
    _chat(plane, dep, 3)
    judged = plane.sla.run_once()
    (recovery,) = judged[dep]
    assert not recovery.breached
    assert recovery.metric is ev.SlaMetric.TTFT_MS
    assert recovery.value < 250
    kinds = [type(e) for e in plane.history(dep) if isinstance(e, ev.SlaBreached | ev.SlaRecovered)]
    assert kinds == [ev.SlaBreached, ev.SlaRecovered]
    # Throughput (20 tokens/s configured) met its 10 tokens/s target throughout: never breached.
    assert all(e.metric is ev.SlaMetric.TTFT_MS for e in plane.history(dep) if isinstance(e, ev.SlaBreached))
    plane.runner.run_until_idle()
    with plane.views.read() as tx:
        rows = tx.execute("SELECT kind, metric, value, target FROM sla_breaches ORDER BY position")
    assert [(r[0], r[1]) for r in rows] == [("breached", "ttft_ms"), ("recovered", "ttft_ms")]
    assert rows[0][2] == breach.value
