"""Writers' clocks disagree: events may arrive stamped before earlier ones.

Whatever order the timestamps come in, a deployment's billing segments stay ordered and
non-empty, bill between one replica and the capacity, and no segment reaches back into a
minute that was already metered (it could never be charged, or would be charged twice) —
a replica loss found late and dated back (``lost_at``) included.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from uuid import uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.domain.billing.pricing import Tier
from modelyard.domain.catalog.models import Size
from modelyard.domain.deployments import aggregate as agg
from modelyard.domain.deployments import commands as cmd
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.metering import due_minutes, meter_minute
from modelyard.domain.shared.errors import IllegalTransition

T0 = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)


# Commands and their arguments besides the deployment and the time.
def _start(deployment: agg.Deployment, *, at: datetime) -> ev.DomainEvent:
    return cmd.start_replica(deployment, f"r{deployment.version}", "http://127.0.0.1:9", at)


def _lose(deployment: agg.Deployment, *, back_s: int, at: datetime) -> ev.DomainEvent:
    replica = deployment.replicas[0] if deployment.replicas else "r0"
    lost_at = at - timedelta(seconds=back_s) if back_s else None
    return cmd.lose_replica(deployment, replica, "exit", at, lost_at)


COMMANDS: list[tuple[Callable[..., ev.DomainEvent], dict[str, Any]]] = [
    (_start, {}),
    (_start, {}),
    (_lose, {"back_s": 0}),
    (_lose, {"back_s": 200}),
    (cmd.activate, {}),
    (cmd.request_scale, {"capacity": 2}),
    (cmd.finish_scale, {"capacity": 2}),
    (cmd.request_scale, {"capacity": 8}),
    (cmd.finish_scale, {"capacity": 8}),
    (cmd.scale_to_zero, {}),
    (cmd.degrade, {"reason": "r"}),
    (cmd.recover, {}),
]
# (which command or -1 for a meter run, clock skew of that writer in ms, time passing in s)
schedule = st.lists(
    st.tuples(st.integers(-1, len(COMMANDS) - 1), st.integers(-90_000, 2_000), st.integers(0, 120)),
    max_size=40,
)


def _check(deployment: agg.Deployment) -> None:
    segments = deployment.segments
    for segment in segments[:-1]:
        assert segment.end is not None
    for segment in segments:
        assert segment.end is None or segment.start < segment.end
        assert 1 <= segment.serving <= segment.capacity
    for before, after in pairwise(segments):
        assert before.end is not None
        assert before.end <= after.start
    if deployment.last_metered is not None and segments:
        assert segments[0].end is None or segments[0].end > deployment.last_metered + timedelta(minutes=1)
        assert all(s.start >= deployment.last_metered + timedelta(minutes=1) for s in segments[1:])


@settings(max_examples=200, deadline=None)
@given(schedule)
def test_segments_stay_ordered_whatever_the_clocks_say(plan: list[tuple[int, int, int]]) -> None:
    requested = ev.DeploymentRequested(
        originator_id=uuid4(),
        originator_version=1,
        timestamp=T0,
        account_id=uuid4(),
        prefix="inst_",
        name="n",
        model="m",
        size=Size.SMALL,
        tier=Tier.DEDICATED,
        capacity=1,
    )
    deployment = agg.project_deployment(None, [requested])
    assert deployment is not None
    now = T0
    for which, skew_ms, passing in plan:
        now += timedelta(seconds=passing)
        if which < 0:
            for minute in due_minutes(deployment, now):
                metered = meter_minute(deployment, minute, now)
                if metered is not None:
                    deployment = agg.project_deployment(deployment, [metered])
                    assert deployment is not None
        else:
            command, fields = COMMANDS[which]
            try:
                event = command(deployment, **fields, at=now + timedelta(milliseconds=skew_ms))
            except IllegalTransition:
                continue
            deployment = agg.project_deployment(deployment, [event])
            assert deployment is not None
        _check(deployment)
