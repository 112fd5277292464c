"""The SLA evaluator's judgement: a window's measured figures against the deployment's targets.

Pure. A target missed while not already breached is a breach (with the figure and the
target); a breached target met again is a recovery; anything else records nothing, so a
breach is one event however many windows it lasts. A window without the traffic to measure
a figure (no first token, no completed request) judges nothing about it: silence is neither
slow nor fast. TTFT misses when it is above its target, throughput when it is below.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable

import msgspec

from modelyard.domain.deployments.events import SlaMetric, SlaTargets


class Measured(msgspec.Struct, frozen=True, kw_only=True):
    """One window's figures: mean TTFT of the requests that started in it, and the tokens per
    second a completed request's stream was generated at; None where nothing was measured."""

    ttft_ms: float | None = None
    throughput_tps: float | None = None


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """A breach (``breached``) or a recovery of one metric, with the figure and the target."""

    metric: SlaMetric
    breached: bool
    value: float
    target: float


def judge(targets: SlaTargets, breached: Iterable[SlaMetric], measured: Measured) -> list[Verdict]:
    """The breaches and recoveries ``measured`` makes of ``targets``, given those breached now."""
    already = set(breached)
    checks = (
        (SlaMetric.TTFT_MS, measured.ttft_ms, targets.ttft_target_ms, operator.gt),
        (SlaMetric.THROUGHPUT_TPS, measured.throughput_tps, targets.throughput_target_tps, operator.lt),
    )
    verdicts = []
    for metric, value, target, misses in checks:
        if value is None:
            continue
        missed = target is not None and misses(value, target)
        if missed != (metric in already):
            verdicts.append(Verdict(metric=metric, breached=missed, value=value, target=float(target or 0)))
    return verdicts
