"""What a deployment served, from its replica events alone: the other side of the ledger.

Billing re-cuts its segments as events arrive and charges whole minutes (``aggregate``,
``metering``). Reconciliation folds the same events a second, simpler way — a sweep over
time counting the replicas that served while the deployment was live — and prices each
stretch at the table's rate to the microsecond. The ledger's charges for the same minutes
must agree with it within rounding: one micro-dollar and one second per minute (billing
counts whole seconds). A larger difference is flagged.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import datetime, timedelta

import msgspec

from modelyard.domain.billing.pricing import (
    CAPACITY_TENTHS,
    MINUTE_DENOMINATOR,
    SECONDS_PER_HOUR,
    hourly_micros,
    part_numerator,
)
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.lifecycle import BILLABLE, State, state_after
from modelyard.domain.shared.events import DomainEvent

MINUTE = timedelta(minutes=1)
_MICROS_PER_SECOND = 1_000_000


class Served(msgspec.Struct, frozen=True, kw_only=True):
    """A deployment's serving in ``[since, until)``: replica-seconds and their price."""

    replica_seconds: float
    # The table's price of that serving, to the micro-dollar (rounded down once).
    expected_micros: int
    # The most one minute's charge may differ from its exact price: a micro-dollar of
    # rounding and a second of whole-second clocks, at the deployment's full rate.
    tolerance_per_minute: int


class _Timeline:
    """The deployment's history as time, not as event order: when each replica served
    (a loss found late ends its replica when it was lost), and when the deployment was live
    and at which capacity."""

    def __init__(self) -> None:
        self.state: State | None = None
        self.hourly = 0
        self.capacity = 1
        # (from, live, capacity): the deployment's billable state and capacity from then on.
        self.phases: list[tuple[datetime, bool, int]] = []
        self.open: dict[str, datetime] = {}
        self.served: list[tuple[datetime, datetime]] = []

    def apply(self, event: DomainEvent) -> None:
        at = event.timestamp
        if isinstance(event, ev.DeploymentRequested):
            self.state, self.capacity = State.PROVISIONING, event.capacity
            self.hourly = hourly_micros(event.tier, event.size)
        elif self.state is None:
            return
        else:
            self.state = state_after(self.state, type(event))
        if isinstance(event, ev.ReplicaStarted):
            self.open.setdefault(event.replica, at)
        elif isinstance(event, ev.ReplicaLost) and event.replica in self.open:
            start = self.open.pop(event.replica)
            self.served.append((start, max(start, event.lost_at or at)))
        elif isinstance(event, ev.ScaledTo):
            self.capacity = event.capacity
        elif isinstance(event, ev.Destroyed | ev.ScaledToZero):
            self.served += [(start, max(start, at)) for start in self.open.values()]
            self.open.clear()
        self.phases.append((at, self.state in BILLABLE, self.capacity))

    def sweep(self, since: datetime, until: datetime) -> tuple[int, int]:
        """(replica-microseconds, price numerator) served in ``[since, until)``."""
        intervals = [*self.served, *((start, until) for start in self.open.values())]
        times = {since, until, *(p[0] for p in self.phases), *(t for span in intervals for t in span)}
        cuts = sorted(t for t in times if since <= t <= until)
        replica_us = numerator = 0
        phase = 0
        phases = sorted(self.phases, key=lambda p: p[0])
        for start, end in itertools.pairwise(cuts):
            while phase + 1 < len(phases) and phases[phase + 1][0] <= start:
                phase += 1
            if not phases or phases[phase][0] > start:
                continue
            _, live, capacity = phases[phase]
            serving = min(sum(1 for a, b in intervals if a <= start < b), capacity)
            if live and serving:
                micros = (end - start) // timedelta(microseconds=1)
                replica_us += serving * micros
                numerator += part_numerator(self.hourly, capacity=capacity, serving=serving, seconds=micros)
        return replica_us, numerator


def served(events: Iterable[DomainEvent], since: datetime, until: datetime) -> Served:
    """What the deployment's ``events`` say it served in ``[since, until)``."""
    timeline = _Timeline()
    for event in events:
        timeline.apply(event)
    replica_us, numerator = timeline.sweep(since, until)
    tenths = CAPACITY_TENTHS.get(max((p[2] for p in timeline.phases), default=1), 10)
    full_rate_per_second = timeline.hourly * tenths // (SECONDS_PER_HOUR * 10)
    return Served(
        replica_seconds=replica_us / _MICROS_PER_SECOND,
        expected_micros=numerator // (MINUTE_DENOMINATOR * _MICROS_PER_SECOND),
        tolerance_per_minute=1 + full_rate_per_second + 1,
    )


def metered_until(events: Iterable[DomainEvent]) -> datetime | None:
    """The end of the last minute the meter recorded for the deployment (None before any)."""
    minutes = [e.minute for e in events if isinstance(e, ev.MinuteMetered)]
    return max(minutes) + MINUTE if minutes else None
