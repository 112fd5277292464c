"""Snapshots and the aggregate cache never change what an aggregate is.

Over random histories (accounts credited, deployments requested, run, scaled, metered
minute by minute, torn down), written through the services by two stores over one SQLite
file, each with its own cache and snapshots every few versions:

- every snapshot taken, restored and given its tail, is the state folded from the first
  event; so is what each store loads (cached and fast-forwarded, or from a snapshot);
- the events alone, folded from the first, give the same state with no snapshot at all.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.domain.accounts import aggregate as accounts
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.deployments import aggregate as deployments
from modelyard.domain.deployments.metering import due_minutes
from modelyard.domain.deployments.service import (
    MeterMinute,
    OnDeployment,
    ReplicaCommand,
    RequestDeployment,
    WithCapacity,
)
from modelyard.domain.services import Services
from modelyard.domain.shared import snapshots
from modelyard.domain.shared.errors import ConcurrencyConflict, DomainError
from modelyard.domain.shared.events import Aggregate
from modelyard.domain.shared.store import Store

T0 = datetime(2026, 3, 1, tzinfo=UTC)
operations = st.lists(
    st.tuples(
        st.sampled_from(["credit", "deploy", "activate", "scale", "teardown", "meter", "meter", "lose"]),
        st.integers(0, 1),  # which store writes: two processes, one history
        st.integers(0, 3),
        st.integers(1, 400),
    ),
    max_size=40,
)
KINDS: list[tuple[type[Aggregate], Any]] = [
    (accounts.Account, accounts.project_account),
    (deployments.Deployment, deployments.project_deployment),
]


def _play(stores: list[Store], ops: list[tuple[str, int, int, int]]) -> tuple[list[UUID], list[UUID]]:
    services = [Services.over(s) for s in stores]
    opened = [services[0].accounts.open_account(OpenAccount(name=f"a{n}", at=T0)).id for n in range(2)]
    made: list[UUID] = []
    now = T0
    for name, writer, pick, amount in ops:
        now += timedelta(seconds=amount)
        on = services[writer]
        try:
            if name == "credit":
                on.accounts.add_credits(AddCredits(account_id=opened[pick % 2], amount=amount * 1000, at=now))
            elif name == "deploy":
                request = RequestDeployment(account_id=opened[pick % 2], model="smollm2-135m", at=now)
                made.append(on.deployments.request(request).id)
            elif made:
                _step(on, name, made[pick % len(made)], now)
        except (DomainError, ConcurrencyConflict):
            pass  # refused commands write nothing; the history goes on
    return opened, made


def _step(services: Services, name: str, dep: UUID, now: datetime) -> None:
    deployments_ = services.deployments
    if name == "activate":
        deployments_.start_replica(ReplicaCommand(deployment_id=dep, replica=f"r{now.timestamp()}", at=now))
        deployments_.activate(OnDeployment(deployment_id=dep, at=now))
    elif name == "scale":
        deployments_.request_scale(WithCapacity(deployment_id=dep, capacity=2, at=now))
        deployments_.finish_scale(WithCapacity(deployment_id=dep, capacity=2, at=now + timedelta(seconds=3)))
    elif name == "teardown":
        deployments_.request_teardown(OnDeployment(deployment_id=dep, at=now))
    elif name == "lose":
        for replica in deployments_.get(dep).replicas[:1]:
            deployments_.lose_replica(ReplicaCommand(deployment_id=dep, replica=replica, at=now))
    else:
        for minute in due_minutes(deployments_.get(dep), now):
            deployments_.meter(MeterMinute(deployment_id=dep, minute=minute, at=now))


def _folded(store: Store, aggregate_id: UUID, project: Any, lte: int | None = None) -> Any:
    """The aggregate folded from its first event, no cache, no snapshot."""
    return project(None, store.events.get(aggregate_id, lte=lte))


@settings(max_examples=30, deadline=None)
@given(operations, st.integers(1, 6))
def test_snapshot_plus_tail_and_the_cache_give_the_state_folded_from_the_first_event(
    ops: list[tuple[str, int, int, int]], interval: int
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(Path(folder) / "e.sqlite3"),
            "CREATE_TABLE": "y",
        }
        stores = [Store(env=env, snapshot_interval=interval), Store(env=env, snapshot_interval=interval)]
        opened, made = _play(stores, ops)
        store = stores[0]
        assert store.snapshots is not None
        for ids, (kind, project) in zip((opened, made), KINDS, strict=True):
            for aggregate_id in ids:
                whole = _folded(store, aggregate_id, project)
                taken = 0
                for stored in store.snapshots.recorder.select_events(aggregate_id):
                    restored = snapshots.restore(stored, kind)
                    assert restored == _folded(store, aggregate_id, project, lte=stored.originator_version)
                    tail = store.events.get(aggregate_id, gt=stored.originator_version)
                    assert project(restored, tail) == whole
                    taken += 1
                # Every write but the first crosses intervals in a store that had just loaded
                # the aggregate: reaching ``interval`` (after the first event) took a snapshot.
                assert taken > 0 or whole.version < max(2, interval)
                for each in stores:
                    assert (
                        each.load(aggregate_id, project, kind, DomainError) == whole
                    )  # cached, fast-forwarded
                    each.forget()
                    assert each.load(aggregate_id, project, kind, DomainError) == whole  # from a snapshot
        for each in stores:
            each.close()
