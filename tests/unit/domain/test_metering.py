"""Metering one deployment's minutes: due minutes, pro-rated amounts by the replicas
serving, refusals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest

from modelyard.domain.billing.pricing import Tier, minute_price
from modelyard.domain.catalog.models import Size
from modelyard.domain.deployments import aggregate as agg
from modelyard.domain.deployments import commands as cmd
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.metering import amount_for, due_minutes, meter_minute, open_segment
from modelyard.domain.shared.errors import DuplicateMinute, InvalidRequest

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
S = timedelta(seconds=1)
M = timedelta(minutes=1)


def _new(size: Size = Size.SMALL, tier: Tier = Tier.DEDICATED, capacity: int = 1) -> agg.Deployment:
    # The recorded fact itself, not the command: these tests price sizes the catalog's
    # deployable models do not all come in.
    requested = ev.DeploymentRequested(
        originator_id=uuid4(),
        originator_version=1,
        timestamp=T0,
        account_id=uuid4(),
        prefix="inst_",
        name="n",
        model="m",
        size=size,
        tier=tier,
        capacity=capacity,
    )
    deployment = agg.project_deployment(None, [requested])
    assert deployment is not None
    return deployment


def _then(
    deployment: agg.Deployment, command: Callable[..., ev.DomainEvent], *args: object
) -> agg.Deployment:
    """The deployment after ``command(deployment, *args)``'s event."""
    after = agg.project_deployment(deployment, [command(deployment, *args)])
    assert after is not None
    return after


def _started(deployment: agg.Deployment, at: datetime = T0, count: int | None = None) -> agg.Deployment:
    """The deployment with ``count`` more replicas serving (its capacity by default), from ``at``."""
    for _ in range(deployment.capacity if count is None else count):
        name = f"r{len(deployment.replicas) + deployment.version}"
        deployment = _then(deployment, cmd.start_replica, name, "http://127.0.0.1:9", at)
    return deployment


def _running(deployment: agg.Deployment, at: datetime = T0) -> agg.Deployment:
    """Replicas started at ``at`` and the deployment activated then: billed from ``at``."""
    return _then(_started(deployment, at), cmd.activate, at)


def _meter(
    deployment: agg.Deployment, minute: datetime, at: datetime
) -> tuple[agg.Deployment, ev.MinuteMetered]:
    metered = meter_minute(deployment, minute, at)
    assert metered is not None
    after = agg.project_deployment(deployment, [metered])
    assert after is not None
    return after, metered


def test_a_full_minute_costs_a_sixtieth_of_the_hourly_price() -> None:
    running = _running(_new())
    after, metered = _meter(running, T0, T0 + M)
    assert (metered.minute, metered.seconds, metered.amount) == (T0, 60, 2_500)
    assert metered.account_id == running.account_id
    assert metered.parts == (ev.MeteredPart(seconds=60, capacity=1, multiplier_tenths=10, serving=1),)
    assert after.last_metered == T0


def test_a_partial_minute_is_pro_rated_to_the_second() -> None:
    # Activated at 09:00:20.9: billing starts at the whole second, 40 s of the minute.
    running = _running(_new(size=Size.LARGE, capacity=4), T0 + 20 * S + timedelta(milliseconds=900))
    _, metered = _meter(running, T0, T0 + M)
    assert metered.seconds == 40
    assert metered.amount == 650_000 * 33 * 40 // 36_000  # 23_833.33 rounded down


def test_a_capacity_change_inside_a_minute_prices_each_part() -> None:
    deployment = _running(_new())
    deployment = _then(deployment, cmd.request_scale, 8, T0 + 10 * S)
    deployment = _started(deployment, T0 + 12 * S, count=7)
    deployment = _then(deployment, cmd.finish_scale, 8, T0 + 15 * S)
    _, metered = _meter(deployment, T0, T0 + M)
    assert metered.parts == (
        ev.MeteredPart(seconds=15, capacity=1, multiplier_tenths=10, serving=1),
        ev.MeteredPart(seconds=45, capacity=8, multiplier_tenths=60, serving=8),
    )
    # One rounding for the whole minute: (150_000 * 10 * 15 + 150_000 * 60 * 45) // 36_000.
    assert metered.amount == 11_875


def test_the_shared_tier_costs_five_cents_an_hour() -> None:
    _, metered = _meter(_running(_new(tier=Tier.SHARED)), T0, T0 + M)
    assert metered.amount == 833


def test_idle_minutes_cost_nothing_and_are_not_recorded() -> None:
    deployment = _new()
    assert meter_minute(deployment, T0, T0 + M) is None  # still provisioning
    deployment = _running(deployment, T0 + 2 * M)
    deployment = _then(deployment, cmd.scale_to_zero, T0 + 3 * M)
    deployment = _running(deployment, T0 + 6 * M + 30 * S)
    deployment = _then(deployment, cmd.request_teardown, T0 + 7 * M)
    assert due_minutes(deployment, T0 + 20 * M) == [T0 + 2 * M, T0 + 6 * M]
    assert meter_minute(deployment, T0 + 4 * M, T0 + 20 * M) is None


def test_an_unfinished_minute_is_refused() -> None:
    running = _running(_new())
    with pytest.raises(InvalidRequest, match="has not ended"):
        meter_minute(running, T0, T0 + 59 * S)
    assert due_minutes(running, T0 + 59 * S) == []
    assert due_minutes(running, T0 + M) == [T0]


def test_a_minute_is_named_by_its_start_in_utc() -> None:
    running = _running(_new())
    with pytest.raises(InvalidRequest, match="not the start of a minute"):
        meter_minute(running, T0 + S, T0 + 5 * M)
    with pytest.raises(InvalidRequest, match="UTC"):
        meter_minute(running, T0.replace(tzinfo=None), T0 + 5 * M)
    with pytest.raises(InvalidRequest, match="UTC"):
        meter_minute(running, T0.astimezone(timezone(timedelta(hours=2))), T0 + 5 * M)
    with pytest.raises(InvalidRequest, match="UTC"):
        due_minutes(running, datetime(2026, 5, 1, 10, 0))


def test_a_minute_at_or_before_the_last_metered_one_is_a_duplicate() -> None:
    deployment = _running(_new())
    deployment, _ = _meter(deployment, T0 + M, T0 + 3 * M)
    for minute in (T0, T0 + M):
        with pytest.raises(DuplicateMinute, match="already metered") as caught:
            meter_minute(deployment, minute, T0 + 3 * M)
        assert caught.value.code == "DUPLICATE_MINUTE"
    assert due_minutes(deployment, T0 + 3 * M) == [T0 + 2 * M]


def test_the_meter_catches_up_every_minute_after_downtime() -> None:
    deployment = _running(_new(), T0 + 30 * S)
    now = T0 + 10 * M + 5 * S
    due = due_minutes(deployment, now)
    assert due == [T0 + i * M for i in range(10)]
    total = 0
    for minute in due:
        deployment, metered = _meter(deployment, minute, now)
        total += metered.amount
    assert total == 1_250 + 9 * 2_500
    assert due_minutes(deployment, now) == []
    # Metered segments are forgotten; the open one stays.
    assert open_segment(deployment) == agg.Segment(start=T0 + 30 * S, end=None, capacity=1, serving=1)


def test_a_metered_minute_is_a_legal_event_only_while_it_can_be_recorded() -> None:
    deployment = _running(_new())
    deployment = _then(deployment, cmd.request_teardown, T0 + 30 * S)
    deployment = _then(deployment, cmd.mark_destroyed, T0 + 40 * S)
    # Billing stopped at teardown; the last half minute is still owed and still metered.
    _, metered = _meter(deployment, T0, T0 + 5 * M)
    assert metered.seconds == 30


@pytest.mark.parametrize("capacity", [1, 2, 4, 8])
def test_every_replica_serving_costs_the_price_table_s_minute(capacity: int) -> None:
    for size in (Size.SMALL, Size.MEDIUM, Size.LARGE, Size.XL):
        _, metered = _meter(_running(_new(size=size, capacity=capacity)), T0, T0 + M)
        assert metered.amount == minute_price(tier=Tier.DEDICATED, size=size, capacity=capacity)


def test_a_degraded_minute_bills_the_replicas_that_served() -> None:
    deployment = _running(_new(size=Size.LARGE, capacity=4))
    deployment = _then(deployment, cmd.lose_replica, deployment.replicas[0], "exit 1", T0 + 30 * S)
    deployment = _then(deployment, cmd.lose_replica, deployment.replicas[0], "exit 1", T0 + 30 * S)
    deployment = _then(deployment, cmd.degrade, "2 of 4 replicas down", T0 + 31 * S)
    _, metered = _meter(deployment, T0, T0 + M)
    assert metered.parts == (
        ev.MeteredPart(seconds=30, capacity=4, multiplier_tenths=33, serving=4),
        ev.MeteredPart(seconds=30, capacity=4, multiplier_tenths=33, serving=2),
    )
    # 3.3x for 30 s, then two of four (3.3x / 2) for 30 s, rounded down once.
    assert metered.amount == 650_000 * 33 * (8 * 30 + 4 * 30) // (36_000 * 8)
    assert metered.amount < minute_price(tier=Tier.DEDICATED, size=Size.LARGE, capacity=4)


def test_a_running_deployment_with_no_replica_serving_owes_nothing() -> None:
    deployment = _running(_new(capacity=2))
    for replica in deployment.replicas:
        deployment = _then(deployment, cmd.lose_replica, replica, "process exited", T0 + M)
    deployment = _then(deployment, cmd.degrade, "2 of 2 replicas down", T0 + M)
    assert due_minutes(deployment, T0 + 5 * M) == [T0]
    assert meter_minute(deployment, T0 + 2 * M, T0 + 5 * M) is None
    deployment = _started(deployment, T0 + 3 * M + 30 * S, count=1)
    assert due_minutes(deployment, T0 + 5 * M) == [T0, T0 + 3 * M, T0 + 4 * M]


def test_a_part_metered_before_serving_was_recorded_prices_as_full_capacity() -> None:
    deployment = _new(size=Size.XL, capacity=8)
    old = ev.MeteredPart(seconds=42, capacity=8, multiplier_tenths=60)
    full = ev.MeteredPart(seconds=42, capacity=8, multiplier_tenths=60, serving=8)
    assert amount_for(deployment, [old]) == amount_for(deployment, [full]) == 2_850_000 * 60 * 42 // 36_000
