"""Replica truth across server processes: what a killed server left is recorded lost and healed.

Two reconcilers over one event store, one views database and one replica folder stand for
two lives of ``modelyard serve``. The first starts a deployment's replicas and dies without
a word (its replicas die with it, as ``lifeline`` makes them); the second records each loss,
dated when the first last saw its replicas, degrades, replaces and recovers; stopping
gracefully records its own replicas' losses.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from modelyard.adapters.eventlog.sources import NotificationLogSource
from modelyard.adapters.placement.local import HEARTBEAT, LocalPlacement
from modelyard.adapters.views.db import SqliteViews
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.service import Provision, RequestDeployment
from modelyard.domain.services import Services
from modelyard.domain.shared.events import DomainEvent
from modelyard.domain.shared.store import Store
from modelyard.projections.deployments.queries import deployment_state, serving_replicas
from modelyard.projections.registry import all_projections
from modelyard.settings import load_settings
from modelyard.workers.projection_runner import ProjectionRunner
from modelyard.workers.reconciler import Reconciler

pytestmark = pytest.mark.integration


class Yard:
    """The store, the views kept up to date by hand, and the services."""

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
        self.settings = load_settings({"MODELYARD_ENGINE": "simulated", "MODELYARD_DATA_DIR": str(tmp)})

    def reconciler(self) -> Reconciler:
        """A reconciler as a fresh server process has it, over the same replica folder."""
        self.placement = LocalPlacement(self.tmp / "replicas", gpu=False)
        return Reconciler(self.settings, self.services.deployments, self.views, self.placement)

    def catch_up(self) -> None:
        self.runner.run_until_idle()

    def history(self, dep: UUID) -> list[DomainEvent]:
        return list(self.store.events.get(dep))

    def state(self, dep: UUID) -> str:
        self.catch_up()
        with self.views.read() as tx:
            found = deployment_state(tx, dep)
        assert found is not None
        return found.state


@pytest.fixture
def yard(tmp_path: Path) -> Iterator[Yard]:
    made = Yard(tmp_path)
    yield made
    made.runner.close()
    made.store.close()


def _provisioned(yard: Yard, capacity: int) -> UUID:
    at = datetime.now(UTC)
    account = yard.services.accounts.open_account(OpenAccount(name="recovery", at=at)).id
    yard.services.accounts.add_credits(AddCredits(account_id=account, amount=50_000_000, at=at))
    request = RequestDeployment(account_id=account, model="smollm2-135m", capacity=capacity, at=at)
    return yard.services.deployments.provision(
        Provision(deployment=request, key_hash="h", key_display="k")
    ).id


def _pass_until(yard: Yard, reconciler: Reconciler, dep: UUID, state: str, passes: int = 10) -> None:
    for _ in range(passes):
        yard.catch_up()
        reconciler.run_once()
        if yard.state(dep) == state:
            return
    raise AssertionError(f"{dep} is {yard.state(dep)} after {passes} passes, not {state}")


def _live_routes(yard: Yard, dep: UUID) -> list[int]:
    """The status each replica the view routes to answers /health with, given its token."""
    with yard.views.read() as tx:
        routes = serving_replicas(tx, dep)
    return [
        httpx.get(f"{r.base_url}/health", headers={"Authorization": f"Bearer {r.token}"}).status_code
        for r in routes
    ]


def test_a_killed_servers_replicas_are_recorded_lost_when_it_last_saw_them_and_replaced(yard: Yard) -> None:
    dep = _provisioned(yard, capacity=2)
    first = yard.reconciler()
    _pass_until(yard, first, dep, "running")
    old = {name: handle.pid for name, handle in first.replicas[dep].items()}
    # The first server dies outright: its replicas with it, nothing recorded. It last saw them here:
    seen = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    for pid in old.values():
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
    os.utime(yard.tmp / "replicas" / HEARTBEAT, (seen.timestamp(), seen.timestamp()))

    second = yard.reconciler()
    second.recover()
    history = yard.history(dep)
    lost = [e for e in history if isinstance(e, ev.ReplicaLost)]
    assert sorted(e.replica for e in lost) == sorted(old)
    assert all(e.timestamp == seen for e in lost)
    assert isinstance(history[-1], ev.DeploymentDegraded)
    assert yard.state(dep) == "degraded"
    assert _live_routes(yard, dep) == []

    _pass_until(yard, second, dep, "running")
    started = [e for e in yard.history(dep) if isinstance(e, ev.ReplicaStarted)]
    assert len(started) == 4
    assert all(e.token for e in started)
    assert not set(second.replicas[dep]) & set(old)
    assert _live_routes(yard, dep) == [200, 200]
    # Nothing more to do: a further pass records nothing.
    count = len(yard.history(dep))
    second.run_once()
    assert len(yard.history(dep)) == count

    handles = list(second.replicas[dep].values())
    second.release()
    after = yard.history(dep)[count:]
    assert [type(e) for e in after] == [ev.ReplicaLost, ev.ReplicaLost, ev.DeploymentDegraded]
    assert yard.state(dep) == "degraded"
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{h.pid}").exists() for h in handles) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{h.pid}").exists() for h in handles)
    assert list((yard.tmp / "replicas").glob("*.log*")) == []


def test_a_replica_the_views_still_show_after_its_own_loss_is_not_lost_twice(yard: Yard) -> None:
    dep = _provisioned(yard, capacity=1)
    reconciler = yard.reconciler()
    _pass_until(yard, reconciler, dep, "running")
    (handle,) = reconciler.replicas[dep].values()
    assert handle.pid is not None
    os.kill(handle.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while yard.placement.alive(handle) and time.monotonic() < deadline:
        time.sleep(0.05)
    reconciler.run_once()  # loses it, degrades, replaces, recovers; the views have seen none of it
    reconciler.run_once()  # the views still show the old replica, not owned any more
    lost = [e for e in yard.history(dep) if isinstance(e, ev.ReplicaLost)]
    assert [e.replica for e in lost] == [handle.name]
    assert yard.state(dep) == "running"
    reconciler.release()
