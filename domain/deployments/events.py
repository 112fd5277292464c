"""What happens to a deployment: past-tense facts.

Fields whose values come from a fixed set are typed with that set's enum. msgspec encodes
a StrEnum as its value, so events stored when these fields were plain strings decode into
the enums unchanged (``tests/unit/domain/test_stored_events.py`` holds such events).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

import msgspec

from modelyard.domain.billing.pricing import Tier
from modelyard.domain.catalog.hardware import Preset
from modelyard.domain.catalog.models import Size
from modelyard.domain.shared.events import DomainEvent


class SlaMetric(StrEnum):
    """What an SLA target measures (FEATURES E3), one per field of ``SlaTargets``."""

    TTFT_MS = "ttft_ms"
    THROUGHPUT_TPS = "throughput_tps"
    CONCURRENCY = "concurrency"


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
    """An account asked for a deployment of a catalog model; it starts provisioning.

    ``prefix`` is the dialect that asked (``inst_`` or ``dep_``). Events have carried it
    since the first version, so it stays; a deployment's id does not depend on it.
    """

    account_id: UUID
    prefix: str
    name: str
    model: str
    size: Size
    tier: Tier
    capacity: int
    gpu_type: str | None = None
    region: str | None = None
    preset: Preset = Preset.BALANCED


# omit_defaults: an event without a token encodes as it did before tokens existed, byte for byte.
class ReplicaStarted(DomainEvent, frozen=True, kw_only=True, omit_defaults=True):
    """A replica came up healthy and serves the deployment."""

    replica: str
    # Where the replica answers; the gateway routes requests there.
    base_url: str = ""
    # What the replica was started with and checks on every call, so a request for it never
    # lands on another process that took its port later. It names a replica, grants no user
    # anything, and is useless once the replica stops. Added later: older events have none.
    token: str = ""


# ``omit_defaults``: a loss with no ``lost_at`` is stored as it was before the field existed.
class ReplicaLost(DomainEvent, frozen=True, kw_only=True, omit_defaults=True):
    """A replica died, stopped answering, or was stopped on purpose (``reason`` says which).

    ``lost_at`` is when it stopped serving, where that is known to be before this event
    (a process that starts finds replicas of one that crashed): billing stops there, never
    before a minute already metered. Added later; older events decode with None.
    """

    replica: str
    reason: str
    lost_at: datetime | None = None


class DeploymentActivated(DomainEvent, frozen=True, kw_only=True):
    """Enough replicas serve: the deployment runs and billing starts."""


class ProvisioningFailed(DomainEvent, frozen=True, kw_only=True):
    """The deployment could not be placed or started; it ends ``failed``."""

    reason: str


class CapacityAwaited(DomainEvent, frozen=True, kw_only=True):
    """No node has room for the deployment's replicas now (a placement on a cluster): it
    stays provisioning (or waking) and is placed once room frees, or fails after the wait
    limit. Recorded once a wait; ``reason`` is the placement's own words."""

    reason: str


# ``omit_defaults``: a request without a reason is stored as it was before the field existed.
class ScaleRequested(DomainEvent, frozen=True, kw_only=True, omit_defaults=True):
    """Another capacity was asked for; billing keeps the old rate until ``ScaledTo``.

    ``reason`` says why when the autoscaler decided it (the figures it decided on); a
    scale asked for through the API has none. Added later; older events decode with "".
    """

    capacity: int
    reason: str = ""


class ScaledTo(DomainEvent, frozen=True, kw_only=True):
    """The replicas now serve at ``capacity``; billing follows from here."""

    capacity: int


# ``omit_defaults``: one without a reason is stored as it was before the field existed.
class ScaledToZero(DomainEvent, frozen=True, kw_only=True, omit_defaults=True):
    """Idle: every replica was released and billing stopped (``reason`` says why; added later).

    ``for_balance``: the account ran low (``domain/accounts/low_balance.py``); a request does
    not wake it, only credit does. Added later; older events decode with False.
    """

    reason: str = ""
    for_balance: bool = False


# ``omit_defaults``: a wake without a reason is stored as it was before the field existed.
class WakeRequested(DomainEvent, frozen=True, kw_only=True, omit_defaults=True):
    """A request reached a deployment scaled to zero: it cold-starts (``waking``) at its capacity.

    ``reason`` says why when it was not a request (credit added after a low balance).
    """

    reason: str = ""


class OnLowBalance(StrEnum):
    """What a deployment allows when its account runs low (below ``degrade_below``)."""

    KEEP = "keep"
    SCALE_TO_ZERO = "scale_to_zero"
    CHEAPER_PRESET = "cheaper_preset"


class LowBalanceAllowanceSet(DomainEvent, frozen=True, kw_only=True):
    """The owner chose what the deployment allows when its account runs low."""

    on_low_balance: OnLowBalance


# ``omit_defaults``: a change that restores has no ``held_from``.
class PresetChanged(DomainEvent, frozen=True, kw_only=True, omit_defaults=True):
    """The deployment now runs ``preset``, for ``reason``.

    ``held_from`` is the preset it is to go back to: set when the change was made because
    the account ran low, None when the change restores it.
    """

    preset: Preset
    reason: str
    held_from: Preset | None = None


class DeploymentDegraded(DomainEvent, frozen=True, kw_only=True):
    """Serving with fewer replicas than asked for, for ``reason``."""

    reason: str


class DeploymentRecovered(DomainEvent, frozen=True, kw_only=True):
    """Back to full strength after degrading."""


class AutoscalingSet(DomainEvent, frozen=True, kw_only=True):
    """The autoscaling policy was replaced."""

    policy: Autoscaling


class SlaTargetsSet(DomainEvent, frozen=True, kw_only=True):
    """The SLA targets were replaced."""

    targets: SlaTargets


class SlaBreached(DomainEvent, frozen=True, kw_only=True):
    """A measured figure missed its SLA target."""

    metric: SlaMetric
    value: float
    target: float


class SlaRecovered(DomainEvent, frozen=True, kw_only=True):
    """A missed SLA target is met again."""

    metric: SlaMetric


class TeardownRequested(DomainEvent, frozen=True, kw_only=True):
    """Destroy was asked for: billing stops now; replicas are stopped downstream."""


class Destroyed(DomainEvent, frozen=True, kw_only=True):
    """Every replica is gone; the deployment is over."""


# ``omit_defaults``: a part without ``serving`` is stored as it was before the field existed.
class MeteredPart(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A stretch of one metered minute at one capacity: what an auditor re-prices.

    Its price is hourly x multiplier_tenths/10 x serving/capacity x seconds/3600.
    """

    seconds: int
    capacity: int
    # The capacity multiplier in tenths (1.8x is 18), as the price table held it then.
    multiplier_tenths: int
    # Replicas serving throughout the stretch. Parts metered before billing followed the
    # serving replicas have None: the whole capacity was billed.
    serving: int | None = None


class MinuteMetered(DomainEvent, frozen=True, kw_only=True):
    """One UTC minute of billable runtime, charged once.

    ``amount`` is the sum over ``parts`` of hourly price x multiplier x serving/capacity x
    seconds, rounded down once. ``parts`` was added after the first version; older events decode with none.
    """

    account_id: UUID
    minute: datetime
    seconds: int
    amount: int
    parts: tuple[MeteredPart, ...] = ()
