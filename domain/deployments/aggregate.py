"""The deployment aggregate: its state and how each of its events folds into it.

One mutator per event, registered by type; each applies the lifecycle's transition
(``lifecycle.LIFECYCLE``) and, where the billed rate changes, closes and opens billing
segments. The commands that decide which events happen are in ``commands``.

Billing follows the replicas actually serving: a segment is a stretch at one capacity
asked for with one number of replicas serving (started and not lost, at most the
capacity), in a billable state. With none serving nothing is billed, whatever the state
says; ``metering`` prices a segment at the capacity's multiplier times serving/capacity.
"""

from __future__ import annotations

from datetime import datetime
from functools import singledispatch
from uuid import UUID

import msgspec

from modelyard.domain.billing.pricing import Tier
from modelyard.domain.catalog.hardware import Preset
from modelyard.domain.catalog.models import Size
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.lifecycle import BILLABLE, State, state_after
from modelyard.domain.shared.events import Aggregate, DomainEvent, NotThisAggregate, projector, touched
from modelyard.domain.shared.time import MINUTE, whole_second

__all__ = ["Deployment", "Segment", "project_deployment"]


class Segment(msgspec.Struct, frozen=True, kw_only=True):
    """A stretch of billable runtime, whole seconds, end exclusive: ``serving`` of ``capacity``
    replicas serve throughout (1 <= serving <= capacity)."""

    start: datetime
    end: datetime | None
    capacity: int
    serving: int


class Deployment(Aggregate, frozen=True, kw_only=True):
    """One private model deployment (an ``inst_`` instance or a ``dep_`` deployment)."""

    account_id: UUID
    prefix: str
    name: str
    model: str
    size: Size
    tier: Tier
    capacity: int
    gpu_type: str | None
    region: str | None
    preset: Preset
    state: State
    replicas: tuple[str, ...] = ()
    pending_capacity: int | None = None
    failure_reason: str | None = None
    # Since when, and why, no node has had room for its replicas (``CapacityAwaited``);
    # None while it is not waiting. Cleared once it runs, fails or is torn down.
    awaiting_capacity_since: datetime | None = None
    awaiting_capacity_reason: str | None = None
    autoscaling: ev.Autoscaling = ev.Autoscaling()
    sla: ev.SlaTargets = ev.SlaTargets()
    breached: tuple[ev.SlaMetric, ...] = ()
    segments: tuple[Segment, ...] = ()
    last_metered: datetime | None = None
    # Low balance (``domain/accounts/low_balance.py``): what the deployment allows, whether
    # it is scaled to zero because the account ran low, and the preset to go back to.
    on_low_balance: ev.OnLowBalance = ev.OnLowBalance.KEEP
    held_for_balance: bool = False
    preset_held_from: Preset | None = None
    # Why the last low-balance step (or its undoing) was taken; None before any.
    low_balance_reason: str | None = None

    @property
    def serving(self) -> int:
        """Replicas billed now: those started and not lost, at most the capacity asked.

        While a scale-up starts replicas the old capacity is still billed, so the extra ones
        cost nothing until ``ScaledTo``; the shared tier's one replica serves capacity 1.
        """
        return min(len(self.replicas), self.capacity) if self.state in BILLABLE else 0

    @property
    def billable(self) -> bool:
        """Whether runtime is being charged right now: a billable state, a replica serving."""
        return self.serving > 0


# --- how events fold --------------------------------------------------------------------


@singledispatch
def _mutate(event: DomainEvent, deployment: Deployment | None) -> Deployment | None:
    raise NotThisAggregate(f"{type(event).__name__} is not a deployment event")


@_mutate.register
def _(event: ev.DeploymentRequested, _: Deployment | None) -> Deployment:
    return Deployment(
        id=event.originator_id,
        version=event.originator_version,
        created_on=event.timestamp,
        modified_on=event.timestamp,
        account_id=event.account_id,
        prefix=event.prefix,
        name=event.name,
        model=event.model,
        size=event.size,
        tier=event.tier,
        capacity=event.capacity,
        gpu_type=event.gpu_type,
        region=event.region,
        preset=event.preset,
        state=State.PROVISIONING,
    )


def _step(
    deployment: Deployment | None, event: DomainEvent, *, since: datetime | None = None, **changes: object
) -> Deployment:
    """The deployment after ``event``: its transition, ``changes``, and billing re-cut.

    The re-cut falls at the event's time, or at ``since`` when the change is known to have
    happened earlier (a replica found lost after a restart).
    """
    if deployment is None:
        raise NotThisAggregate(f"{type(event).__name__} is not an event of a requested deployment")
    state = state_after(deployment.state, type(event))
    after = touched(deployment, event, state=state, **changes)
    return _rebill(deployment, after, _billing_clock(deployment, since or event.timestamp))


@_mutate.register
def _(event: ev.ReplicaStarted, deployment: Deployment | None) -> Deployment:
    # A replica is counted once, however often its start is recorded.
    replicas = (*_without(_replicas(deployment), event.replica), event.replica)
    return _step(deployment, event, replicas=replicas)


@_mutate.register
def _(event: ev.ReplicaLost, deployment: Deployment | None) -> Deployment:
    return _step(
        deployment, event, since=event.lost_at, replicas=_without(_replicas(deployment), event.replica)
    )


@_mutate.register
def _(event: ev.DeploymentActivated, deployment: Deployment | None) -> Deployment:
    return _step(deployment, event, awaiting_capacity_since=None, awaiting_capacity_reason=None)


@_mutate.register
def _(event: ev.ProvisioningFailed, deployment: Deployment | None) -> Deployment:
    # A wait for capacity ends when it runs, fails or is torn down.
    return _step(
        deployment,
        event,
        failure_reason=event.reason,
        replicas=(),
        awaiting_capacity_since=None,
        awaiting_capacity_reason=None,
    )


@_mutate.register
def _(event: ev.CapacityAwaited, deployment: Deployment | None) -> Deployment:
    return _step(
        deployment, event, awaiting_capacity_since=event.timestamp, awaiting_capacity_reason=event.reason
    )


@_mutate.register
def _(event: ev.ScaleRequested, deployment: Deployment | None) -> Deployment:
    return _step(deployment, event, pending_capacity=event.capacity)


@_mutate.register
def _(event: ev.ScaledTo, deployment: Deployment | None) -> Deployment:
    return _step(deployment, event, capacity=event.capacity, pending_capacity=None)


@_mutate.register
def _(event: ev.ScaledToZero, deployment: Deployment | None) -> Deployment:
    why = event.reason if event.for_balance else _last_reason(deployment)
    return _step(deployment, event, replicas=(), held_for_balance=event.for_balance, low_balance_reason=why)


@_mutate.register
def _(event: ev.WakeRequested, deployment: Deployment | None) -> Deployment:
    why = event.reason or _last_reason(deployment)
    return _step(deployment, event, held_for_balance=False, low_balance_reason=why)


@_mutate.register
def _(event: ev.LowBalanceAllowanceSet, deployment: Deployment | None) -> Deployment:
    return _step(deployment, event, on_low_balance=event.on_low_balance)


@_mutate.register
def _(event: ev.PresetChanged, deployment: Deployment | None) -> Deployment:
    return _step(
        deployment,
        event,
        preset=event.preset,
        preset_held_from=event.held_from,
        low_balance_reason=event.reason,
    )


@_mutate.register
def _(event: ev.DeploymentDegraded, deployment: Deployment | None) -> Deployment:
    return _step(deployment, event, failure_reason=event.reason)


@_mutate.register
def _(event: ev.DeploymentRecovered, deployment: Deployment | None) -> Deployment:
    return _step(deployment, event, failure_reason=None)


@_mutate.register
def _(event: ev.AutoscalingSet, deployment: Deployment | None) -> Deployment:
    return _step(deployment, event, autoscaling=event.policy)


@_mutate.register
def _(event: ev.SlaTargetsSet, deployment: Deployment | None) -> Deployment:
    return _step(deployment, event, sla=event.targets)


@_mutate.register
def _(event: ev.SlaBreached, deployment: Deployment | None) -> Deployment:
    breached = () if deployment is None else deployment.breached
    return _step(deployment, event, breached=tuple(sorted({*breached, event.metric})))


@_mutate.register
def _(event: ev.SlaRecovered, deployment: Deployment | None) -> Deployment:
    breached = () if deployment is None else deployment.breached
    return _step(deployment, event, breached=tuple(m for m in breached if m != event.metric))


@_mutate.register
def _(event: ev.TeardownRequested, deployment: Deployment | None) -> Deployment:
    return _step(deployment, event, awaiting_capacity_since=None, awaiting_capacity_reason=None)


@_mutate.register
def _(event: ev.Destroyed, deployment: Deployment | None) -> Deployment:
    return _step(deployment, event, replicas=())


@_mutate.register
def _(event: ev.MinuteMetered, deployment: Deployment | None) -> Deployment:
    segments = () if deployment is None else _prune(deployment.segments, event.minute + MINUTE)
    return _step(deployment, event, last_metered=event.minute, segments=segments)


def _last_reason(deployment: Deployment | None) -> str | None:
    return None if deployment is None else deployment.low_balance_reason


def _replicas(deployment: Deployment | None) -> tuple[str, ...]:
    return () if deployment is None else deployment.replicas


def _without(replicas: tuple[str, ...], replica: str) -> tuple[str, ...]:
    return tuple(r for r in replicas if r != replica)


def _billing_clock(deployment: Deployment, timestamp: datetime) -> datetime:
    """Where a billing boundary caused at ``timestamp`` falls: never before an earlier one.

    Writers' clocks differ a little (the API, the meter, the reconciler), so an event may
    carry a time before the last boundary. Clamping keeps segments ordered and keeps new
    runtime out of minutes already metered, which could never be charged again.
    """
    floor = whole_second(timestamp)
    if deployment.last_metered is not None:
        floor = max(floor, deployment.last_metered + MINUTE)
    if deployment.segments:
        last = deployment.segments[-1]
        floor = max(floor, last.start if last.end is None else last.end)
    return floor


def _rebill(before: Deployment, after: Deployment, at: datetime) -> Deployment:
    """Close the running segment and open another whenever the billed rate changes:
    the replicas serving, or the capacity they are billed at."""
    if _rate(before) == _rate(after):
        return after
    segments = list(after.segments)
    if before.billable and segments and segments[-1].end is None:
        segments[-1] = msgspec.structs.replace(segments[-1], end=at)
    if after.billable:
        segments.append(Segment(start=at, end=None, capacity=after.capacity, serving=after.serving))
    kept = tuple(s for s in segments if s.end != s.start)
    if after.last_metered is not None:
        # A stretch closed at the end of the last metered minute (a late loss is clamped
        # there) holds nothing left to bill.
        kept = _prune(kept, after.last_metered + MINUTE)
    return msgspec.structs.replace(after, segments=kept)


def _rate(deployment: Deployment) -> tuple[int, int]:
    """What the billed rate depends on: (replicas serving, capacity), or nothing billed."""
    return (deployment.serving, deployment.capacity) if deployment.billable else (0, 0)


def _prune(segments: tuple[Segment, ...], metered_until: datetime) -> tuple[Segment, ...]:
    """Drop segments wholly before the end of the last metered minute: nothing left to bill."""
    return tuple(s for s in segments if s.end is None or s.end > metered_until)


project_deployment = projector(_mutate)
