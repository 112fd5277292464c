"""Properties of the autoscaler's rule: always a priced capacity inside the bounds, up only
under load, never down on the figures that would scale it up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from modelyard.domain.deployments.autoscaling import CAPACITIES, Sample, Tuning, bounds, decide
from modelyard.domain.deployments.events import Autoscaling

T0 = datetime(2026, 5, 1, tzinfo=UTC)

policies = st.builds(
    Autoscaling,
    min_replicas=st.integers(0, 8),
    max_replicas=st.integers(0, 8),
    scale_to_zero=st.booleans(),
    idle_timeout_seconds=st.integers(1, 600),
)
samples = st.lists(
    st.builds(
        lambda s, w, r, n, t: Sample(
            at=T0 + timedelta(seconds=s), waiting=w, running=r, started=n, ttft_ms=t
        ),
        st.integers(0, 120),
        st.integers(0, 50),
        st.integers(0, 50),
        st.integers(0, 20),
        st.none() | st.floats(0, 5000),
    ),
    max_size=8,
).map(lambda xs: sorted(xs, key=lambda x: x.at))
tunings = st.builds(Tuning, target_concurrency=st.floats(0.5, 16), down_window_s=st.floats(1, 120))


@given(policies, st.sampled_from(CAPACITIES), samples, tunings, st.none() | st.integers(1, 2000))
def test_every_decision_is_a_priced_capacity_inside_the_bounds_or_zero_when_allowed(
    policy: Autoscaling, capacity: int, observed: list[Sample], tuning: Tuning, target: int | None
) -> None:
    now = T0 + timedelta(seconds=120)
    decision = decide(
        policy, capacity, observed, now=now, idle_since=T0, tuning=tuning, ttft_target_ms=target
    )
    if decision is None:
        return
    assert decision.reason
    if decision.capacity == 0:
        assert policy.scale_to_zero
        return
    low, high = bounds(policy)
    assert decision.capacity in CAPACITIES
    assert low <= decision.capacity <= high
    assert decision.capacity != capacity


@given(policies, st.sampled_from(CAPACITIES), samples, tunings)
def test_without_requests_in_flight_it_never_scales_up_inside_the_bounds(
    policy: Autoscaling, capacity: int, observed: list[Sample], tuning: Tuning
) -> None:
    quiet = [Sample(at=s.at, waiting=0, running=0) for s in observed]
    low, high = bounds(policy)
    decision = decide(
        policy,
        capacity,
        quiet,
        now=T0 + timedelta(seconds=120),
        idle_since=T0 + timedelta(seconds=120),
        tuning=tuning,
    )
    if decision is not None and low <= capacity <= high:
        assert decision.capacity < capacity


@given(policies, st.sampled_from(CAPACITIES), st.integers(0, 200), tunings)
def test_more_load_never_asks_for_fewer_replicas(
    policy: Autoscaling, capacity: int, load: int, tuning: Tuning
) -> None:
    def chosen(in_flight: int) -> int:
        sample = Sample(at=T0, waiting=in_flight, running=0)
        decision = decide(policy, capacity, [sample], now=T0, idle_since=T0, tuning=tuning)
        return capacity if decision is None else decision.capacity

    assert chosen(load + 1) >= chosen(load)
