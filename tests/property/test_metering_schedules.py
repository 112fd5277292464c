"""Metering under random runtime, crashes, downtime and duplicate workers, through the store.

Two meter workers (two ``Yard`` instances on one SQLite store, as two processes would be)
meter a deployment whose lifecycle changes at random times. A worker may crash part-way
through its due minutes, stay down for a while, or race the other on the same minute.
Afterwards every billable minute is charged exactly once, the account's charges equal
the meter's, and the total equals the exact pro-rated price of the billable seconds,
rounded down by less than one micro-dollar per charged minute: never more.
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
from modelyard.domain.application import Yard
from modelyard.domain.billing.pricing import (
    CAPACITY_TENTHS,
    DEDICATED_HOURLY,
    ROUNDING_BOUND_MICROS_PER_MINUTE,
)
from modelyard.domain.catalog.models import Size
from modelyard.domain.deployments.events import MinuteMetered
from modelyard.domain.deployments.lifecycle import State
from modelyard.domain.deployments.metering import due_minutes, meter_minute, minute_of
from modelyard.domain.shared.errors import ConcurrencyConflict, DuplicateMinute, IllegalTransition
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
            st.sampled_from(["activate", "scale", "zero", "degrade", "recover"]),
            st.sampled_from([1, 2, 4, 8]),
        ),
        # A worker's run: which worker, and after how many minutes it crashes (5 = never).
        st.tuples(st.just("meter"), st.integers(0, 1), st.integers(0, 5)),
        st.tuples(st.just("race"), st.integers(0, 1), st.just(0)),
    ),
    max_size=40,
)


class Model:
    """What ran, tracked apart from the aggregate: billable seconds per minute and capacity."""

    def __init__(self) -> None:
        self.since: datetime | None = None
        self.capacity = 1
        self.exact = Fraction(0)
        self.billed_minutes: set[datetime] = set()

    def observe(self, serving: bool, capacity: int, at: datetime) -> None:
        """The deployment now serves (or not) at ``capacity``; close and open stretches."""
        at = whole_second(at)
        if self.since is not None and (not serving or capacity != self.capacity):
            self._close(at)
        if serving and self.since is None:
            self.since = at
        self.capacity = capacity

    def _close(self, at: datetime) -> None:
        assert self.since is not None
        seconds = int((at - self.since).total_seconds())
        self.exact += Fraction(HOURLY * CAPACITY_TENTHS[self.capacity] * seconds, 36_000)
        minute = minute_of(self.since)
        while minute < at:
            self.billed_minutes.add(minute)
            minute += timedelta(minutes=1)
        self.since = None


@contextmanager
def _store() -> Iterator[tuple[Yard, Yard, Yard]]:
    with tempfile.TemporaryDirectory() as folder:
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(Path(folder) / "events.sqlite3"),
            "CREATE_TABLE": "y",
        }
        apps = (Yard(env=env), Yard(env=env), Yard(env=env))
        try:
            yield apps
        finally:
            for app in apps:
                app.close()


def _life(control: Yard, dep: UUID, action: str, capacity: int, now: datetime) -> None:
    try:
        if action == "activate":
            control.activate(dep, at=now)
        elif action == "scale":
            control.request_scale(dep, capacity, at=now)
            control.mark_scaled(dep, capacity, at=now + timedelta(seconds=1))
        elif action == "zero":
            control.scale_to_zero(dep, at=now)
        elif action == "degrade":
            control.degrade(dep, "a replica was lost", at=now)
        else:
            control.recover(dep, at=now)
    except IllegalTransition:
        pass


def _run(worker: Yard, dep: UUID, now: datetime, crash_after: int) -> None:
    """A meter run; it dies after ``crash_after`` minutes unless that is 5."""
    for done, minute in enumerate(due_minutes(worker.get_deployment(dep), now)):
        if crash_after < 5 and done >= crash_after:
            return
        # The other worker got there first: its charge stands, ours is not written.
        with suppress(DuplicateMinute, ConcurrencyConflict):
            worker.meter(dep, minute, at=now)


def _race(first: Yard, second: Yard, dep: UUID, now: datetime) -> None:
    """Both workers load, both price the first due minute, both save: exactly one wins."""
    loaded = [(w, w.get_deployment(dep)) for w in (first, second)]
    loaded_accounts = [w.get_account(d.account_id) for w, d in loaded]
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
            second.meter(dep, minute, at=now)
        except DuplicateMinute:
            continue
        raise AssertionError("a raced minute was charged twice")


def _events(yard: Yard) -> list[object]:
    notifications = yard.recorder.select_notifications(1, 100_000)
    return [yard.mapper.to_domain_event(n) for n in notifications]


@settings(max_examples=40, deadline=None)
@given(steps)
def test_every_billable_minute_is_charged_once_at_the_exact_price_or_less(
    plan: list[tuple[str, object, int]],
) -> None:
    with _store() as (control, *workers):
        account = control.open_account(name="metered", at=T0)
        control.add_credits(account, CREDITS, at=T0)
        dep = control.request_deployment(account_id=account, model="llama3.1-8b", at=T0)
        model, now = Model(), T0
        for kind, a, b in plan:
            if kind == "wait":
                now += timedelta(seconds=int(str(a)), microseconds=b)
            elif kind == "life":
                _life(control, dep, str(a), b, now)
                deployment = control.get_deployment(dep)
                # A scale lands one second after it was asked for (see _life); the rest at once.
                changed_at = now + timedelta(seconds=1) if a == "scale" else now
                model.observe(deployment.state in SERVING, deployment.capacity, changed_at)
                now += timedelta(seconds=1)
            elif kind == "meter":
                _run(workers[int(str(a))], dep, now, b)
            else:
                _race(workers[int(str(a))], workers[1 - int(str(a))], dep, now)
        control.request_teardown(dep, at=now)
        model.observe(False, model.capacity, now)
        _run(workers[0], dep, now + timedelta(minutes=2), 5)

        events = _events(control)
        metered = [e for e in events if isinstance(e, MinuteMetered)]
        charged = [e for e in events if isinstance(e, CreditsCharged)]
        assert max(Counter(e.minute for e in metered).values(), default=1) == 1
        assert max(Counter(e.minute for e in charged).values(), default=1) == 1
        assert [(e.minute, e.amount) for e in metered] == [(e.minute, e.amount) for e in charged]
        assert {e.minute for e in metered} == model.billed_minutes
        total = sum(e.amount for e in charged)
        assert control.get_account(account).balance == CREDITS - total
        assert total <= model.exact
        assert model.exact - total < len(charged) * ROUNDING_BOUND_MICROS_PER_MINUTE or total == model.exact
