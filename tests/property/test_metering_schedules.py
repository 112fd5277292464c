"""Metering under random runtime, crashes, downtime and duplicate workers, through the store.

Two meter workers (two ``Store`` instances on one SQLite file, as two processes would be)
meter a deployment whose lifecycle and serving replicas change at random times. A worker may crash part-way
through its due minutes, stay down for a while, or race the other on the same minute.
Afterwards every billable minute is charged exactly once, the account's charges equal
the meter's, and the total equals the exact pro-rated price of the replica-seconds served
in billable states (multiplier x serving/capacity), rounded down by less than one
micro-dollar per charged minute: never more.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.domain.accounts.aggregate import CreditsCharged, charge_minute
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.billing.pricing import (
    CAPACITY_TENTHS,
    DEDICATED_HOURLY,
    ROUNDING_BOUND_MICROS_PER_MINUTE,
)
from modelyard.domain.catalog.models import Size
from modelyard.domain.deployments.events import MinuteMetered
from modelyard.domain.deployments.lifecycle import State
from modelyard.domain.deployments.metering import due_minutes, meter_minute, minute_of
from modelyard.domain.deployments.service import (
    MeterDue,
    MeterMinute,
    OnDeployment,
    ReplicaCommand,
    RequestDeployment,
    WithCapacity,
    WithReason,
)
from modelyard.domain.services import Services
from modelyard.domain.shared.errors import ConcurrencyConflict, DuplicateMinute, IllegalTransition
from modelyard.domain.shared.store import Store
from modelyard.domain.shared.time import whole_second

T0 = datetime(2026, 7, 1, 23, 58, 40, tzinfo=UTC)
CREDITS = 10**12
HOURLY = DEDICATED_HOURLY[Size.SMALL]
SERVING = {State.RUNNING, State.SCALING, State.DEGRADED}

steps = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.integers(1, 300), st.integers(0, 999_999)),
        st.tuples(
            st.just("life"),
            st.sampled_from(["activate", "scale", "zero", "degrade", "recover", "up", "down"]),
            st.sampled_from([1, 2, 4, 8]),
        ),
        # A worker's run: which worker, and after how many minutes it crashes (5 = never).
        st.tuples(st.just("meter"), st.integers(0, 1), st.integers(0, 5)),
        st.tuples(st.just("race"), st.integers(0, 1), st.just(0)),
    ),
    max_size=40,
)


class Model:
    """What ran, tracked apart from the aggregate's segments: served seconds per minute, at
    which capacity and with how many replicas."""

    def __init__(self) -> None:
        self.since: datetime | None = None
        self.capacity = 1
        self.serving = 0
        self.exact = Fraction(0)
        self.billed_minutes: set[datetime] = set()

    def observe(self, serving: int, capacity: int, at: datetime) -> None:
        """``serving`` replicas now serve at ``capacity`` (0: nothing billed); close and open stretches."""
        at = whole_second(at)
        if self.since is not None and (serving, capacity) != (self.serving, self.capacity):
            self._close(at)
        if serving and self.since is None:
            self.since = at
        self.capacity, self.serving = capacity, serving

    def _close(self, at: datetime) -> None:
        assert self.since is not None
        seconds = int((at - self.since).total_seconds())
        tenths = CAPACITY_TENTHS[self.capacity]
        self.exact += Fraction(HOURLY * tenths * self.serving * seconds, 36_000 * self.capacity)
        minute = minute_of(self.since)
        while minute < at:
            self.billed_minutes.add(minute)
            minute += timedelta(minutes=1)
        self.since = None


@contextmanager
def _stores() -> Iterator[tuple[Store, Store, Store]]:
    with tempfile.TemporaryDirectory() as folder:
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(Path(folder) / "events.sqlite3"),
            "CREATE_TABLE": "y",
        }
        apps = (Store(env=env), Store(env=env), Store(env=env))
        try:
            yield apps
        finally:
            for app in apps:
                app.close()


def _life(control: Services, dep: UUID, action: str, capacity: int, now: datetime) -> None:
    deployments = control.deployments
    try:
        if action == "activate":
            deployments.activate(OnDeployment(deployment_id=dep, at=now))
        elif action == "scale":
            deployments.request_scale(WithCapacity(deployment_id=dep, capacity=capacity, at=now))
            later = now + timedelta(seconds=1)
            deployments.finish_scale(WithCapacity(deployment_id=dep, capacity=capacity, at=later))
        elif action == "zero":
            deployments.scale_to_zero(OnDeployment(deployment_id=dep, at=now))
        elif action == "degrade":
            deployments.degrade(WithReason(deployment_id=dep, reason="a replica was lost", at=now))
        elif action == "up":
            name = f"r{now.timestamp()}"
            deployments.start_replica(ReplicaCommand(deployment_id=dep, replica=name, at=now))
        elif action == "down":
            replicas = deployments.get(dep).replicas
            if replicas:
                lost = ReplicaCommand(deployment_id=dep, replica=replicas[0], reason="exit", at=now)
                deployments.lose_replica(lost)
        else:
            deployments.recover(OnDeployment(deployment_id=dep, at=now))
    except IllegalTransition:
        pass


def _run(worker: Store, dep: UUID, now: datetime, crash_after: int, *, tick: bool) -> None:
    """A meter run; it dies after ``crash_after`` minutes unless that is 5.

    A ``tick`` is the meter worker's (``meter_due``: its minutes in one transaction, so a
    crash leaves all or none of them); otherwise it meters minute by minute.
    """
    deployments = Services.over(worker).deployments
    if tick:
        most = None if crash_after == 5 else crash_after
        deployments.meter_due(MeterDue(deployment_ids=(dep,), at=now, most=most))
        return
    for done, minute in enumerate(due_minutes(deployments.get(dep), now)):
        if crash_after < 5 and done >= crash_after:
            return
        # The other worker got there first: its charge stands, ours is not written.
        with suppress(DuplicateMinute, ConcurrencyConflict):
            deployments.meter(MeterMinute(deployment_id=dep, minute=minute, at=now))


def _race(first: Store, second: Store, dep: UUID, now: datetime) -> None:
    """Both workers load, both price the first due minute, both save: exactly one wins."""
    loaded = [(w, Services.over(w).deployments.get(dep)) for w in (first, second)]
    loaded_accounts = [Services.over(w).accounts.get(d.account_id) for w, d in loaded]
    stale_due = due_minutes(loaded[0][1], now)
    outcomes = []
    for (worker, deployment), account in zip(loaded, loaded_accounts, strict=True):
        if not stale_due or (metered := meter_minute(deployment, stale_due[0], now)) is None:
            return
        charges = charge_minute(
            account,
            deployment_id=dep,
            minute=metered.minute,
            amount=metered.amount,
            metered_version=metered.originator_version,
            at=now,
        )
        try:
            worker.record(metered, *charges)
            outcomes.append("won")
        except ConcurrencyConflict:
            outcomes.append("lost")
    assert sorted(outcomes) == ["lost", "won"]
    # The loser, meeting its stale list again, is refused minute by minute.
    for minute in stale_due[:1]:
        try:
            Services.over(second).deployments.meter(MeterMinute(deployment_id=dep, minute=minute, at=now))
        except DuplicateMinute:
            continue
        raise AssertionError("a raced minute was charged twice")


def _events(store: Store) -> list[object]:
    notifications = store.recorder.select_notifications(1, 100_000)
    return [store.mapper.to_domain_event(n) for n in notifications]


@settings(max_examples=40, deadline=None)
@given(steps)
def test_every_billable_minute_is_charged_once_at_the_exact_price_or_less(
    plan: list[tuple[str, object, int]],
) -> None:
    with _stores() as (control_store, *workers):
        control = Services.over(control_store)
        account = control.accounts.open_account(OpenAccount(name="metered", at=T0)).id
        control.accounts.add_credits(AddCredits(account_id=account, amount=CREDITS, at=T0))
        request = RequestDeployment(account_id=account, model="llama3.1-8b", at=T0)
        dep = control.deployments.request(request).id
        control.deployments.start_replica(ReplicaCommand(deployment_id=dep, replica="r0", at=T0))
        model, now = Model(), T0
        for kind, a, b in plan:
            if kind == "wait":
                now += timedelta(seconds=int(str(a)), microseconds=b)
            elif kind == "life":
                _life(control, dep, str(a), b, now)
                deployment = control.deployments.get(dep)
                # A scale lands one second after it was asked for (see _life); the rest at once.
                changed_at = now + timedelta(seconds=1) if a == "scale" else now
                serving = (
                    min(len(deployment.replicas), deployment.capacity) if deployment.state in SERVING else 0
                )
                model.observe(serving, deployment.capacity, changed_at)
                now += timedelta(seconds=1)
            elif kind == "meter":
                # Odd crash points, and the first worker's runs that never crash, are ticks.
                _run(workers[int(str(a))], dep, now, b, tick=b % 2 == 1 or (b == 5 and a == 0))
            else:
                _race(workers[int(str(a))], workers[1 - int(str(a))], dep, now)
        control.deployments.request_teardown(OnDeployment(deployment_id=dep, at=now))
        model.observe(0, model.capacity, now)
        _run(workers[0], dep, now + timedelta(minutes=2), 5, tick=True)

        events = _events(control_store)
        metered = [e for e in events if isinstance(e, MinuteMetered)]
        charged = [e for e in events if isinstance(e, CreditsCharged)]
        assert max(Counter(e.minute for e in metered).values(), default=1) == 1
        assert max(Counter(e.minute for e in charged).values(), default=1) == 1
        assert [(e.minute, e.amount) for e in metered] == [(e.minute, e.amount) for e in charged]
        assert {e.minute for e in metered} == model.billed_minutes
        total = sum(e.amount for e in charged)
        assert control.accounts.get(account).balance == CREDITS - total
        assert total <= model.exact
        assert model.exact - total < len(charged) * ROUNDING_BOUND_MICROS_PER_MINUTE or total == model.exact
