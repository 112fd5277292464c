"""The SLA judgement: one breach per episode with its figures, a recovery when met again, and
silence (nothing measured) judges nothing."""

from __future__ import annotations

from modelyard.domain.deployments.events import SlaMetric, SlaTargets
from modelyard.domain.deployments.sla import Measured, Verdict, judge

TARGETS = SlaTargets(ttft_target_ms=500, throughput_target_tps=40)


def test_a_missed_target_is_a_breach_once_and_a_met_one_a_recovery() -> None:
    slow = Measured(ttft_ms=900.0, throughput_tps=55.0)
    assert judge(TARGETS, [], slow) == [
        Verdict(metric=SlaMetric.TTFT_MS, breached=True, value=900.0, target=500.0)
    ]
    assert judge(TARGETS, [SlaMetric.TTFT_MS], slow) == []
    fast = Measured(ttft_ms=120.0, throughput_tps=55.0)
    assert judge(TARGETS, [SlaMetric.TTFT_MS], fast) == [
        Verdict(metric=SlaMetric.TTFT_MS, breached=False, value=120.0, target=500.0)
    ]
    assert judge(TARGETS, [], fast) == []


def test_throughput_misses_below_its_target_and_silence_judges_nothing() -> None:
    starved = Measured(throughput_tps=12.5)
    assert judge(TARGETS, [], starved) == [
        Verdict(metric=SlaMetric.THROUGHPUT_TPS, breached=True, value=12.5, target=40.0)
    ]
    assert judge(TARGETS, [SlaMetric.THROUGHPUT_TPS, SlaMetric.TTFT_MS], Measured()) == []
    assert judge(SlaTargets(), [], Measured(ttft_ms=5000.0, throughput_tps=0.1)) == []
    # A target at exactly the measured figure is met.
    assert judge(TARGETS, [], Measured(ttft_ms=500.0, throughput_tps=40.0)) == []
