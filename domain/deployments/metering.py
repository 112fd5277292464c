"""Which minutes of a deployment's runtime are due, and what each costs.

A minute is the UTC minute ``[m, m + 60 s)``. It is due once it has ended and any of its
seconds were billable (a replica served in a billable state; see ``aggregate``); it is
metered at most once because the aggregate refuses a minute at or before the last one it
metered, and the meter always meters due minutes in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from modelyard.domain.billing.pricing import (
    CAPACITY_TENTHS,
    MINUTE_DENOMINATOR,
    hourly_micros,
    part_numerator,
)
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.aggregate import Deployment, Segment
from modelyard.domain.shared.errors import DuplicateMinute, InvalidRequest
from modelyard.domain.shared.time import MINUTE, is_minute_start, require_utc, whole_second
from modelyard.domain.shared.time import minute_floor as minute_of

__all__ = ["MINUTE", "amount_for", "due_minutes", "meter_minute", "minute_of", "open_segment"]


def _parts(deployment: Deployment, minute: datetime) -> list[ev.MeteredPart]:
    """Each billable stretch inside ``minute``: its seconds, capacity and replicas serving."""
    end_of_minute = minute + MINUTE
    parts = []
    for segment in deployment.segments:
        start = max(segment.start, minute)
        end = min(segment.end or end_of_minute, end_of_minute)
        if end > start:
            parts.append(
                ev.MeteredPart(
                    seconds=int((end - start).total_seconds()),
                    capacity=segment.capacity,
                    multiplier_tenths=CAPACITY_TENTHS[segment.capacity],
                    serving=segment.serving,
                )
            )
    return parts


def amount_for(deployment: Deployment, parts: Sequence[ev.MeteredPart]) -> int:
    """The charge for the stretches of one minute, rounded down once (never over).

    A part without ``serving`` (metered before billing followed replicas) served in full.
    """
    rate = hourly_micros(deployment.tier, deployment.size)
    numerator = sum(
        part_numerator(
            rate,
            capacity=part.capacity,
            serving=part.capacity if part.serving is None else part.serving,
            seconds=part.seconds,
        )
        for part in parts
    )
    return numerator // MINUTE_DENOMINATOR


def meter_minute(deployment: Deployment, minute: datetime, at: datetime) -> ev.MinuteMetered | None:
    """The ``MinuteMetered`` for a completed minute, or None if nothing in it was billable."""
    require_utc(minute, "minute")
    require_utc(at, "metering time")
    if not is_minute_start(minute):
        raise InvalidRequest(f"{minute.isoformat()} is not the start of a minute.")
    if minute + MINUTE > at:
        raise InvalidRequest(f"The minute {minute.isoformat()} has not ended yet.")
    if deployment.last_metered is not None and minute <= deployment.last_metered:
        raise DuplicateMinute(
            f"Minute {minute.isoformat()} of this deployment is already metered "
            f"(through {deployment.last_metered.isoformat()})."
        )
    parts = _parts(deployment, minute)
    if not parts:
        return None
    return ev.MinuteMetered(
        originator_id=deployment.id,
        originator_version=deployment.version + 1,
        timestamp=at,
        account_id=deployment.account_id,
        minute=minute,
        seconds=sum(part.seconds for part in parts),
        amount=amount_for(deployment, parts),
        parts=tuple(parts),
    )


def due_minutes(deployment: Deployment, at: datetime) -> list[datetime]:
    """Every completed, not yet metered minute with billable seconds, oldest first.

    This is the meter's catch-up: after any downtime it lists every minute still owed,
    and metering them in this order never meets a ``DuplicateMinute`` of its own making.
    """
    require_utc(at, "metering time")
    last_complete = minute_of(at) - MINUTE
    after = deployment.last_metered
    due: set[datetime] = set()
    for segment in deployment.segments:
        first = minute_of(segment.start)
        end = segment.end or whole_second(at)
        minute = first
        while minute <= last_complete and minute < end:
            if after is None or minute > after:
                due.add(minute)
            minute += MINUTE
    return sorted(due)


def open_segment(deployment: Deployment) -> Segment | None:
    """The stretch being billed right now, if any."""
    last = deployment.segments[-1] if deployment.segments else None
    return last if last is not None and last.end is None else None
