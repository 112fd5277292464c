"""Reconciliation's sweep over replica events agrees with billing, minute for minute.

Random histories of replicas starting and being lost, scales, degradations, idling and
teardown, metered as time passes, then metered to the end. The ledger's sum (the metered
amounts) must equal what ``reconciliation.served`` prices from the replica events alone,
within its stated tolerance per minute; and a charge added with no serving behind it is
beyond the tolerance.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.domain.billing.pricing import Tier
from modelyard.domain.billing.reconciliation import metered_until, served
from modelyard.domain.catalog.models import Size
from modelyard.domain.deployments import aggregate as agg
from modelyard.domain.deployments import commands as cmd
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.metering import due_minutes, meter_minute
from modelyard.domain.shared.errors import DomainError

T0 = datetime(2026, 8, 1, 10, 0, 17, tzinfo=UTC)


def _pick(d: agg.Deployment, n: int) -> str:
    return d.replicas[n % len(d.replicas)] if d.replicas else "none"


STEPS = {
    "start": lambda d, at, n: cmd.start_replica(d, f"r{d.version}", "http://127.0.0.1:9", at),
    "lose": lambda d, at, n: cmd.lose_replica(
        d, d.replicas[n % len(d.replicas)] if d.replicas else "x", "exit", at
    ),
    "activate": lambda d, at, n: cmd.activate(d, at),
    "scale": lambda d, at, n: cmd.request_scale(d, (1, 2, 4, 8)[n % 4], at),
    "finish": lambda d, at, n: cmd.finish_scale(d, d.pending_capacity or d.capacity, at),
    "degrade": lambda d, at, n: cmd.degrade(d, "lost", at),
    "recover": lambda d, at, n: cmd.recover(d, at),
    "zero": lambda d, at, n: cmd.scale_to_zero(d, at),
    "teardown": lambda d, at, n: cmd.request_teardown(d, at),
}
histories = st.lists(
    st.tuples(st.sampled_from([*STEPS, "start", "meter"]), st.integers(0, 150), st.integers(0, 400)),
    max_size=50,
)


def _meter(deployment: agg.Deployment, now: datetime, events: list[ev.DomainEvent]) -> agg.Deployment:
    for minute in due_minutes(deployment, now):
        metered = meter_minute(deployment, minute, now)
        if metered is not None:
            events.append(metered)
            folded = agg.project_deployment(deployment, [metered])
            assert folded is not None
            deployment = folded
    return deployment


@settings(max_examples=150, deadline=None)
@given(histories, st.sampled_from([Size.SMALL, Size.LARGE, Size.XL]))
def test_billed_equals_served_within_rounding(history: list[tuple[str, int, int]], size: Size) -> None:
    requested = ev.DeploymentRequested(
        originator_id=uuid4(), originator_version=1, timestamp=T0, account_id=uuid4(), prefix="inst_",
        name="n", model="m", size=size, tier=Tier.DEDICATED, capacity=1,
    )  # fmt: skip
    deployment = agg.project_deployment(None, [requested])
    assert deployment is not None
    events: list[ev.DomainEvent] = [requested]
    now = T0
    for name, passing, n in history:
        now += timedelta(seconds=passing)
        if name == "meter":
            deployment = _meter(deployment, now, events)
            continue
        try:
            event = STEPS[name](deployment, now, n)
        except DomainError:
            continue
        folded = agg.project_deployment(deployment, [event])
        assert folded is not None
        deployment, _ = folded, events.append(event)
    deployment = _meter(deployment, now + timedelta(minutes=3), events)

    charges = [e for e in events if isinstance(e, ev.MinuteMetered)]
    end = metered_until(events) or T0
    found = served(events, T0 - timedelta(minutes=1), end)
    billed = sum(c.amount for c in charges)
    assert abs(billed - found.expected_micros) <= found.tolerance_per_minute * max(len(charges), 1), (
        billed, found,
    )  # fmt: skip
    # A minute charged with nothing serving behind it (at the largest rate billed) is beyond
    # the tolerance of a second a minute, while the period is short enough for a minute to
    # stand out of it (under half an hour of charges).
    full_rate_per_second = found.tolerance_per_minute - 2
    if len(charges) < 25:
        forged = billed + 60 * full_rate_per_second
        assert abs(forged - found.expected_micros) > found.tolerance_per_minute * (len(charges) + 1)
