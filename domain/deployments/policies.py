"""What an autoscaling policy and SLA targets may say (FEATURES A9, E3).

A policy or a target outside these bounds is refused with the reason, before anything is
recorded; the autoscaler and the SLA evaluator can then trust what they read.
"""

from __future__ import annotations

from modelyard.domain.billing.pricing import Tier
from modelyard.domain.deployments import events as ev
from modelyard.domain.shared.errors import InvalidCapacity, InvalidRequest

# Replicas behind one deployment: the largest capacity (FEATURES A5).
MAX_REPLICAS = 8
# Idle timeouts: at least a second (an agent that wants replicas gone between bursts may
# ask for a short one; the next request cold-starts); over a day is not "idle" any more.
IDLE_TIMEOUT_S = (1, 86_400)
# Targets: a TTFT above ten minutes or a throughput above 100k tok/s cannot be a target.
TTFT_TARGET_MS = (1, 600_000)
THROUGHPUT_TARGET_TPS = (1, 100_000)
CONCURRENCY_LIMIT = (1, 10_000)


def check_autoscaling(tier: Tier, policy: ev.Autoscaling) -> ev.Autoscaling:
    """The policy if its bounds hold and the tier scales (the shared tier does not)."""
    if tier is Tier.SHARED:
        raise InvalidCapacity("A shared deployment does not scale: its replicas are the pool's.")
    if not 0 <= policy.min_replicas <= MAX_REPLICAS:
        raise InvalidRequest(f"min_replicas must be 0 to {MAX_REPLICAS}, got {policy.min_replicas}.")
    if policy.min_replicas == 0 and not policy.scale_to_zero:
        raise InvalidRequest("min_replicas 0 needs scale_to_zero: true (or ask for at least 1).")
    if not 1 <= policy.max_replicas <= MAX_REPLICAS:
        raise InvalidRequest(f"max_replicas must be 1 to {MAX_REPLICAS}, got {policy.max_replicas}.")
    if policy.min_replicas > policy.max_replicas:
        raise InvalidRequest(
            f"min_replicas ({policy.min_replicas}) is more than max_replicas ({policy.max_replicas})."
        )
    low, high = IDLE_TIMEOUT_S
    if not low <= policy.idle_timeout_seconds <= high:
        raise InvalidRequest(
            f"idle_timeout_seconds must be {low} to {high}, got {policy.idle_timeout_seconds}."
        )
    return policy


def _bounded(name: str, value: int | None, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if value is not None and not low <= value <= high:
        raise InvalidRequest(f"{name} must be {low} to {high} (or null for none), got {value}.")


def check_sla(targets: ev.SlaTargets) -> ev.SlaTargets:
    """The targets if each is within its bounds (None: no target)."""
    _bounded("ttft_target_ms", targets.ttft_target_ms, TTFT_TARGET_MS)
    _bounded("throughput_target_tps", targets.throughput_target_tps, THROUGHPUT_TARGET_TPS)
    _bounded("concurrency_limit", targets.concurrency_limit, CONCURRENCY_LIMIT)
    return targets
