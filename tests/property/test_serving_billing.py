"""Billing follows the replicas actually serving, whatever happens to them and when.

Random histories of replicas starting and being lost (some losses found late and dated
back), scales, degradations, idling and teardown, metered at random times. Then:
a minute in which no replica served is never charged; no minute costs more than the full
price of the largest capacity billed in it; each charge is re-priced from its own parts
alone (an auditor needs nothing else); and replaying the recorded events from nothing
gives the same deployment and the same charges.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.domain.billing.pricing import Tier, minute_price
from modelyard.domain.catalog.models import Size
from modelyard.domain.deployments import aggregate as agg
from modelyard.domain.deployments import commands as cmd
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.lifecycle import BILLABLE
from modelyard.domain.deployments.metering import amount_for, due_minutes, meter_minute, minute_of
from modelyard.domain.shared.errors import DomainError
from modelyard.domain.shared.time import whole_second

T0 = datetime(2026, 8, 1, 10, 0, 17, tzinfo=UTC)
Step = Callable[[agg.Deployment, datetime, int], ev.DomainEvent]


def _start(d: agg.Deployment, at: datetime, n: int) -> ev.DomainEvent:
    return cmd.start_replica(d, f"r{d.version}", "http://127.0.0.1:9", at)


def _lose(d: agg.Deployment, at: datetime, n: int) -> ev.DomainEvent:
    replica = d.replicas[n % len(d.replicas)] if d.replicas else "r-none"
    return cmd.lose_replica(d, replica, "exit", at)


def _lose_late(d: agg.Deployment, at: datetime, n: int) -> ev.DomainEvent:
    replica = d.replicas[n % len(d.replicas)] if d.replicas else "r-none"
    return cmd.lose_replica(d, replica, "found after a restart", at, at - timedelta(seconds=n))


def _scale(d: agg.Deployment, at: datetime, n: int) -> ev.DomainEvent:
    return cmd.request_scale(d, (1, 2, 4, 8)[n % 4], at)


def _finish(d: agg.Deployment, at: datetime, n: int) -> ev.DomainEvent:
    return cmd.finish_scale(d, d.pending_capacity or d.capacity, at)


STEPS: dict[str, Step] = {
    "start": _start,
    "lose": _lose,
    "lose_late": _lose_late,
    "activate": lambda d, at, n: cmd.activate(d, at),
    "scale": _scale,
    "finish": _finish,
    "degrade": lambda d, at, n: cmd.degrade(d, "lost", at),
    "recover": lambda d, at, n: cmd.recover(d, at),
    "zero": lambda d, at, n: cmd.scale_to_zero(d, at),
    "teardown": lambda d, at, n: cmd.request_teardown(d, at),
}
histories = st.lists(
    st.tuples(
        st.sampled_from([*STEPS, "meter", "meter"]),
        st.integers(0, 150),  # seconds passing first
        st.integers(0, 400),  # the step's own number (a replica, a capacity, seconds back)
    ),
    max_size=50,
)


def _requested() -> ev.DeploymentRequested:
    return ev.DeploymentRequested(
        originator_id=uuid4(),
        originator_version=1,
        timestamp=T0,
        account_id=uuid4(),
        prefix="inst_",
        name="n",
        model="m",
        size=Size.LARGE,
        tier=Tier.DEDICATED,
        capacity=2,
    )


def _served_minutes(events: list[ev.DomainEvent], end: datetime) -> set[datetime]:
    """The minutes in which some replica served, replayed apart from the aggregate's segments:
    a billable state, and a replica started and not lost. A loss dated back counts from its
    ``lost_at``, but never inside a minute already metered: those were charged as they stood.
    """
    deployment: agg.Deployment | None = None
    metered_through: datetime | None = None
    changes: list[tuple[datetime, bool]] = []
    for event in events:
        deployment = agg.project_deployment(deployment, [event])
        assert deployment is not None
        if isinstance(event, ev.MinuteMetered):
            metered_through = event.minute + timedelta(minutes=1)
            continue
        at = whole_second(event.timestamp)
        if isinstance(event, ev.ReplicaLost) and event.lost_at is not None:
            at = whole_second(event.lost_at)
            at = at if metered_through is None else max(at, metered_through)
        changes.append((at, bool(deployment.replicas) and deployment.state in BILLABLE))
    served: set[datetime] = set()
    for (at, serving), (until, _) in zip(changes, [*changes[1:], (end, False)], strict=True):
        minute = minute_of(at)
        while serving and minute < until:
            served.add(minute)
            minute += timedelta(minutes=1)
    return served


@settings(max_examples=150, deadline=None)
@given(histories)
def test_only_served_minutes_are_charged_never_above_full_price_and_replay_agrees(
    history: list[tuple[str, int, int]],
) -> None:
    requested = _requested()
    deployment = agg.project_deployment(None, [requested])
    assert deployment is not None
    events: list[ev.DomainEvent] = [requested]
    charges: list[ev.MinuteMetered] = []
    now = T0
    for name, passing, n in history:
        now += timedelta(seconds=passing)
        if name == "meter":
            for minute in due_minutes(deployment, now):
                metered = meter_minute(deployment, minute, now)
                if metered is None:
                    continue
                deployment = agg.project_deployment(deployment, [metered])
                assert deployment is not None
                events.append(metered)
                charges.append(metered)
            continue
        try:
            event = STEPS[name](deployment, now, n)
        except DomainError:
            continue
        deployment = agg.project_deployment(deployment, [event])
        assert deployment is not None
        events.append(event)

    # Minutes with no replica serving are never charged.
    served = _served_minutes(events, now + timedelta(hours=1))
    for metered in charges:
        assert metered.minute in served, f"{metered.minute} charged with no replica serving"
        # Never above the full price of the largest capacity billed in that minute.
        largest = max(part.capacity for part in metered.parts)
        assert metered.amount <= minute_price(tier=Tier.DEDICATED, size=Size.LARGE, capacity=largest)
        every_replica = [msgspec.structs.replace(part, serving=part.capacity) for part in metered.parts]
        assert metered.amount <= amount_for(deployment, every_replica)
        assert all(1 <= (part.serving or 0) <= part.capacity for part in metered.parts)
        assert sum(part.seconds for part in metered.parts) == metered.seconds <= 60
        # Auditable: the parts alone give the amount.
        assert amount_for(deployment, metered.parts) == metered.amount

    # Replay: every recorded event folded from nothing is the same deployment, and metering a
    # replay of the history (without the charges) charges the same minutes the same amounts.
    assert agg.project_deployment(None, events) == deployment
    replayed = agg.project_deployment(None, [requested])
    assert replayed is not None
    again: list[ev.MinuteMetered] = []
    for event in events[1:]:
        if isinstance(event, ev.MinuteMetered):
            remetered = meter_minute(replayed, event.minute, event.timestamp)
            assert remetered is not None
            again.append(remetered)
            replayed = agg.project_deployment(replayed, [remetered])
        else:
            replayed = agg.project_deployment(replayed, [event])
        assert replayed is not None
    assert again == charges
