"""What a deployment served, from its replica events alone: the other side of the ledger.

Billing re-cuts its segments as events arrive and charges whole minutes (``aggregate``,
``metering``). Reconciliation folds the same events a second, simpler way — a sweep over
time counting the replicas that served while the deployment was live — and prices each
stretch at the table's rate to the microsecond. The ledger's charges for the same minutes
must agree with it within rounding: one micro-dollar and one second per minute (billing
counts whole seconds). A larger difference is flagged.
"""

from __future__ import annotations

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


class _Sweep:
    def __init__(self) -> None:
        self.state: State | None = None
        self.capacity = 1
        self.replicas: set[str] = set()
        self.hourly = 0
        self.at: datetime | None = None
        self.replica_us = 0
        self.numerator = 0

    def advance(self, to: datetime, since: datetime, until: datetime) -> None:
        """Count the stretch from the last event to ``to``, clipped to ``[since, until)``."""
        if self.at is not None and self.state in BILLABLE:
            start, end = max(self.at, since), min(to, until)
            serving = min(len(self.replicas), self.capacity)
            if end > start and serving:
                micros = (end - start) // timedelta(microseconds=1)
                self.replica_us += serving * micros
                self.numerator += part_numerator(
                    self.hourly, capacity=self.capacity, serving=serving, seconds=micros
                )
        if self.at is None or to > self.at:
            self.at = to

    def apply(self, event: DomainEvent) -> None:
        if isinstance(event, ev.DeploymentRequested):
            self.capacity = event.capacity
            self.hourly = hourly_micros(event.tier, event.size)
            self.state = State.PROVISIONING
            return
        if self.state is None:
            return
        self.state = state_after(self.state, type(event))
        if isinstance(event, ev.ReplicaStarted):
            self.replicas.add(event.replica)
        elif isinstance(event, ev.ReplicaLost):
            self.replicas.discard(event.replica)
        elif isinstance(event, ev.ScaledTo):
            self.capacity = event.capacity
        elif isinstance(event, ev.Destroyed | ev.ScaledToZero):
            self.replicas.clear()


def _when(event: DomainEvent) -> datetime:
    # A replica found lost after the fact stopped serving when it was lost, not when recorded.
    if isinstance(event, ev.ReplicaLost) and event.lost_at is not None:
        return event.lost_at
    return event.timestamp


def served(events: Iterable[DomainEvent], since: datetime, until: datetime) -> Served:
    """What the deployment's ``events`` say it served in ``[since, until)``."""
    sweep = _Sweep()
    for event in events:
        sweep.advance(_when(event), since, until)
        sweep.apply(event)
    if sweep.at is not None and until > sweep.at:
        sweep.advance(until, since, until)
    full_rate_per_second = sweep.hourly * CAPACITY_TENTHS.get(sweep.capacity, 10) // (SECONDS_PER_HOUR * 10)
    return Served(
        replica_seconds=sweep.replica_us / _MICROS_PER_SECOND,
        expected_micros=sweep.numerator // (MINUTE_DENOMINATOR * _MICROS_PER_SECOND),
        tolerance_per_minute=1 + full_rate_per_second + 1,
    )


def metered_until(events: Iterable[DomainEvent]) -> datetime | None:
    """The end of the last minute the meter recorded for the deployment (None before any)."""
    minutes = [e.minute for e in events if isinstance(e, ev.MinuteMetered)]
    return max(minutes) + MINUTE if minutes else None
