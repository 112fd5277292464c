"""The autoscaler's decision: from what the replicas report to the capacity a deployment needs.

Pure: the worker (``workers/autoscaler.py``) reads each replica's engine metrics, sums them
into a ``Sample`` per poll, and asks ``decide`` what to do; it records the answer as an
event with the reason given here. The rule is Knative's concurrency rule, which fits an
engine that batches: the capacity wanted is the requests in the replicas (waiting for a
first token plus generating) divided by a target per replica, rounded up. A deployment
whose TTFT misses its SLA target while requests wait gets one step more. Scaling up acts on
the latest sample; scaling down only on what every sample of a stable window allows (so a
lull between two bursts does not shed replicas that the next burst needs). Capacities are
the priced ones (1, 2, 4 or 8) inside the policy's bounds. Scale-to-zero happens when the
policy allows it and no request came for its idle timeout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec

from modelyard.domain.billing.pricing import CAPACITY_TENTHS
from modelyard.domain.deployments.events import Autoscaling

CAPACITIES = tuple(sorted(CAPACITY_TENTHS))


class Sample(msgspec.Struct, frozen=True, kw_only=True):
    """One poll of a deployment's replicas, summed: requests waiting for their first token and
    generating at ``at``, requests that got their first token since the previous poll, and
    their mean TTFT (None when none did)."""

    at: datetime
    waiting: int
    running: int
    started: int = 0
    ttft_ms: float | None = None
    # Whether every replica answered: one that did not may be busy, so a sample without it is
    # a lower bound on the load, good to scale up on and never to scale down or to zero on.
    complete: bool = True

    @property
    def concurrency(self) -> int:
        """Requests inside the replicas."""
        return self.waiting + self.running


class Tuning(msgspec.Struct, frozen=True, kw_only=True):
    """The operator's knobs: requests in flight per replica aimed at, and how long demand must
    stay low before replicas are shed."""

    target_concurrency: float = 4.0
    down_window_s: float = 60.0


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """Scale to ``capacity`` (0: release every replica), for ``reason``."""

    capacity: int
    reason: str


def bounds(policy: Autoscaling) -> tuple[int, int]:
    """The smallest and largest priced capacities the policy allows (at least 1 while serving)."""
    low = max(1, policy.min_replicas)
    high = max(low, policy.max_replicas)
    inside = [c for c in CAPACITIES if low <= c <= high]
    if inside:
        return inside[0], inside[-1]
    above = [c for c in CAPACITIES if c >= low]
    # Bounds between two priced capacities (3..3): the nearest priced one above the floor.
    fallback = above[0] if above else CAPACITIES[-1]
    return fallback, fallback


def fitted(wanted: int, policy: Autoscaling) -> int:
    """The smallest priced capacity of at least ``wanted`` replicas, inside the policy's bounds."""
    low, high = bounds(policy)
    for capacity in CAPACITIES:
        if capacity >= wanted:
            return min(max(capacity, low), high)
    return high


def wanted(sample: Sample, capacity: int, tuning: Tuning, ttft_target_ms: int | None) -> tuple[int, str]:
    """Replicas ``sample`` asks for, and the figures that say so."""
    need = math.ceil(sample.concurrency / tuning.target_concurrency) if sample.concurrency else 0
    why = (
        f"{sample.waiting} waiting + {sample.running} running on {capacity} replicas"
        f" (target {tuning.target_concurrency:g} per replica)"
    )
    slow = ttft_target_ms is not None and sample.ttft_ms is not None and sample.ttft_ms > ttft_target_ms
    if slow and sample.waiting > 0:
        need = max(need, capacity + 1)
        why += f"; TTFT {sample.ttft_ms:.0f} ms over the {ttft_target_ms} ms target"
    return need, why


DEFAULT_TUNING = Tuning()


def decide(
    policy: Autoscaling,
    capacity: int,
    samples: Sequence[Sample],
    *,
    now: datetime,
    idle_since: datetime,
    tuning: Tuning = DEFAULT_TUNING,
    ttft_target_ms: int | None = None,
) -> Decision | None:
    """What a running deployment at ``capacity`` should do now, or None to stay.

    ``samples`` are this deployment's polls, oldest first, all taken at this capacity's
    watch; ``idle_since`` is when it last saw a request (or began watching).
    """
    whole = all(s.complete for s in samples)
    if policy.scale_to_zero and whole and now - idle_since >= timedelta(seconds=policy.idle_timeout_seconds):
        idle = int((now - idle_since).total_seconds())
        return Decision(
            capacity=0,
            reason=f"no request for {idle} s (idle timeout {policy.idle_timeout_seconds} s)",
        )
    low, high = bounds(policy)
    if not low <= capacity <= high:
        target = min(max(capacity, low), high)
        return Decision(capacity=fitted(target, policy), reason=f"outside the policy's bounds {low}..{high}")
    if not samples:
        return None
    need, why = wanted(samples[-1], capacity, tuning, ttft_target_ms)
    up = fitted(need, policy)
    if up > capacity:
        return Decision(capacity=up, reason=f"scale up: {why}")
    return _shed(policy, capacity, samples, now=now, tuning=tuning, ttft_target_ms=ttft_target_ms)


def _shed(
    policy: Autoscaling,
    capacity: int,
    samples: Sequence[Sample],
    *,
    now: datetime,
    tuning: Tuning,
    ttft_target_ms: int | None,
) -> Decision | None:
    """Scale down to what every sample of the last window allows, once a window was watched."""
    start = now - timedelta(seconds=tuning.down_window_s)
    window = [s for s in samples if s.at >= start]
    if samples[0].at > start or not window or not all(s.complete for s in window):
        return None  # not watched for a whole window yet, or not every replica seen: too soon
    peak = max(wanted(s, capacity, tuning, ttft_target_ms)[0] for s in window)
    down = fitted(peak, policy)
    if down >= capacity:
        return None
    _, why = wanted(samples[-1], capacity, tuning, ttft_target_ms)
    reason = f"scale down: at most {peak} replicas wanted over the last {tuning.down_window_s:g} s; {why}"
    return Decision(capacity=down, reason=reason)
