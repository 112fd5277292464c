"""What happens to a deployment: past-tense facts."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from modelyard.domain.shared.events import DomainEvent


class Autoscaling(msgspec.Struct, frozen=True, kw_only=True):
    """The autoscaling policy (FEATURES A9)."""

    min_replicas: int = 1
    max_replicas: int = 1
    scale_to_zero: bool = False
    idle_timeout_seconds: int = 300


class SlaTargets(msgspec.Struct, frozen=True, kw_only=True):
    """Service-level targets (FEATURES E3); None means no target."""

    ttft_target_ms: int | None = None
    throughput_target_tps: int | None = None
    concurrency_limit: int | None = None


class DeploymentRequested(DomainEvent, frozen=True, kw_only=True):
    account_id: UUID
    prefix: str
    name: str
    model: str
    size: str
    tier: str
    capacity: int
    gpu_type: str | None = None
    region: str | None = None
    preset: str = "balanced"


class ReplicaStarted(DomainEvent, frozen=True, kw_only=True):
    replica: str
    # Where the replica answers; the gateway routes requests there.
    base_url: str = ""


class ReplicaLost(DomainEvent, frozen=True, kw_only=True):
    """A replica died or stopped answering (the brief's ``ReplicaFailed``)."""

    replica: str
    reason: str


# The same fact under the name the issue uses; one class, so one stored topic.
ReplicaFailed = ReplicaLost


class DeploymentActivated(DomainEvent, frozen=True, kw_only=True):
    pass


class ProvisioningFailed(DomainEvent, frozen=True, kw_only=True):
    reason: str


class ScaleRequested(DomainEvent, frozen=True, kw_only=True):
    capacity: int


class ScaledTo(DomainEvent, frozen=True, kw_only=True):
    capacity: int


class ScaledToZero(DomainEvent, frozen=True, kw_only=True):
    pass


class DeploymentDegraded(DomainEvent, frozen=True, kw_only=True):
    reason: str


class DeploymentRecovered(DomainEvent, frozen=True, kw_only=True):
    pass


class AutoscalingSet(DomainEvent, frozen=True, kw_only=True):
    policy: Autoscaling


class SlaTargetsSet(DomainEvent, frozen=True, kw_only=True):
    targets: SlaTargets


class SlaBreached(DomainEvent, frozen=True, kw_only=True):
    metric: str
    value: float
    target: float


class SlaRecovered(DomainEvent, frozen=True, kw_only=True):
    metric: str


class TeardownRequested(DomainEvent, frozen=True, kw_only=True):
    pass


class Destroyed(DomainEvent, frozen=True, kw_only=True):
    pass


class MeteredPart(msgspec.Struct, frozen=True, kw_only=True):
    """A stretch of one metered minute at one capacity: what an auditor re-prices."""

    seconds: int
    capacity: int
    # The capacity multiplier in tenths (1.8x is 18), as the price table held it then.
    multiplier_tenths: int


class MinuteMetered(DomainEvent, frozen=True, kw_only=True):
    """One UTC minute of billable runtime, charged once.

    ``amount`` is the sum over ``parts`` of hourly price x multiplier x seconds, rounded
    down once. ``parts`` was added after the first version; older events decode with none.
    """

    account_id: UUID
    minute: datetime
    seconds: int
    amount: int
    parts: tuple[MeteredPart, ...] = ()
