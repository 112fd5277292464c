"""The autoscaler's rule on concrete figures: up at once, down after a quiet window, to zero when idle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modelyard.domain.deployments.autoscaling import Sample, Tuning, bounds, decide
from modelyard.domain.deployments.events import Autoscaling

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
TUNING = Tuning(target_concurrency=2, down_window_s=60)
POLICY = Autoscaling(min_replicas=1, max_replicas=4)


def _at(
    s: float, waiting: int = 0, running: int = 0, started: int = 0, ttft_ms: float | None = None
) -> Sample:
    return Sample(
        at=T0 + timedelta(seconds=s), waiting=waiting, running=running, started=started, ttft_ms=ttft_ms
    )


def test_a_queue_deeper_than_the_target_scales_up_to_the_next_priced_capacity_with_the_figures() -> None:
    decision = decide(POLICY, 1, [_at(0, waiting=3, running=2)], now=T0, idle_since=T0, tuning=TUNING)
    assert decision is not None
    assert decision.capacity == 4  # 5 in flight / 2 per replica = 3 replicas -> the next priced, 4
    assert "3 waiting + 2 running on 1 replicas" in decision.reason
    assert decision.reason.startswith("scale up")


def test_scaling_up_never_passes_max_replicas() -> None:
    policy = Autoscaling(min_replicas=1, max_replicas=2)
    decision = decide(policy, 1, [_at(0, waiting=40)], now=T0, idle_since=T0, tuning=TUNING)
    assert decision is not None
    assert decision.capacity == 2
    assert decide(policy, 2, [_at(0, waiting=40)], now=T0, idle_since=T0, tuning=TUNING) is None


def test_a_ttft_over_the_sla_target_with_requests_waiting_asks_one_step_more() -> None:
    sample = _at(0, waiting=1, running=0, started=3, ttft_ms=900)
    assert decide(POLICY, 1, [sample], now=T0, idle_since=T0, tuning=TUNING) is None
    decision = decide(POLICY, 1, [sample], now=T0, idle_since=T0, tuning=TUNING, ttft_target_ms=500)
    assert decision is not None
    assert decision.capacity == 2
    assert "TTFT 900 ms over the 500 ms target" in decision.reason


def test_scaling_down_waits_for_a_whole_quiet_window() -> None:
    busy_then_quiet = [_at(0, running=8), _at(30), _at(61)]
    now = T0 + timedelta(seconds=61)
    # The busy sample at 0 s is outside the window ending at 61 s: two quiet samples cover it.
    decision = decide(POLICY, 4, busy_then_quiet, now=now, idle_since=T0, tuning=TUNING)
    assert decision is not None
    assert decision.capacity == 1
    assert decision.reason.startswith("scale down")
    # Watched for less than a window: no shedding yet.
    assert decide(POLICY, 4, [_at(30), _at(61)], now=now, idle_since=T0, tuning=TUNING) is None
    # A burst inside the window keeps what it needed.
    bursty = [_at(0), _at(30, running=6), _at(61)]
    decision = decide(POLICY, 4, bursty, now=now, idle_since=T0, tuning=TUNING)
    assert decision is None  # 6 in flight / 2 = 3 replicas -> 4, the capacity it has


def test_idle_past_the_timeout_goes_to_zero_only_when_the_policy_allows() -> None:
    idle = Autoscaling(min_replicas=1, max_replicas=2, scale_to_zero=True, idle_timeout_seconds=60)
    now = T0 + timedelta(seconds=60)
    decision = decide(idle, 1, [_at(60)], now=now, idle_since=T0, tuning=TUNING)
    assert decision is not None
    assert decision.capacity == 0
    assert "no request for 60 s" in decision.reason
    assert decide(idle, 1, [_at(59)], now=now - timedelta(seconds=1), idle_since=T0, tuning=TUNING) is None
    assert decide(POLICY, 1, [_at(60)], now=now, idle_since=T0, tuning=TUNING) is None


def test_a_capacity_outside_the_bounds_is_brought_inside() -> None:
    decision = decide(Autoscaling(min_replicas=2, max_replicas=4), 8, [], now=T0, idle_since=T0)
    assert decision is not None
    assert decision.capacity == 4
    assert bounds(Autoscaling(min_replicas=0, max_replicas=0)) == (1, 1)
    assert bounds(Autoscaling(min_replicas=3, max_replicas=3)) == (4, 4)


def test_a_replica_that_did_not_answer_its_metrics_never_lets_it_go_down_or_to_zero() -> None:
    idle = Autoscaling(min_replicas=1, max_replicas=4, scale_to_zero=True, idle_timeout_seconds=60)
    now = T0 + timedelta(seconds=61)
    blind = [
        Sample(at=T0, waiting=0, running=0),
        Sample(at=T0 + timedelta(seconds=30), waiting=0, running=0, complete=False),
        Sample(at=now, waiting=0, running=0),
    ]
    assert decide(idle, 4, blind, now=now, idle_since=T0, tuning=TUNING) is None
    # A partial sample is still a lower bound of the load: enough to scale up on.
    busy = [Sample(at=now, waiting=9, running=0, complete=False)]
    decision = decide(idle, 1, busy, now=now, idle_since=now, tuning=TUNING)
    assert decision is not None
    assert decision.capacity == 4
