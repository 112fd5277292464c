"""The deployment aggregate: its state, how events fold into it, and its commands."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import singledispatch
from typing import Any
from uuid import UUID, uuid4

import msgspec

from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.lifecycle import BILLABLE, State, transition
from modelyard.domain.shared.events import Aggregate, DomainEvent, NotThisAggregate, projector, touched
from modelyard.domain.shared.time import MINUTE, whole_second

__all__ = ["Deployment", "Segment", "next_event", "project_deployment", "request_deployment", "whole_second"]


class Segment(msgspec.Struct, frozen=True, kw_only=True):
    """A stretch of billable runtime at one capacity, whole seconds, end exclusive."""

    start: datetime
    end: datetime | None
    capacity: int


class Deployment(Aggregate, frozen=True, kw_only=True):
    """One private model deployment (an ``inst_`` instance or a ``dep_`` deployment)."""

    account_id: UUID
    prefix: str
    name: str
    model: str
    size: str
    tier: str
    capacity: int
    gpu_type: str | None
    region: str | None
    preset: str
    state: State
    replicas: tuple[str, ...] = ()
    pending_capacity: int | None = None
    failure_reason: str | None = None
    autoscaling: ev.Autoscaling = ev.Autoscaling()
    sla: ev.SlaTargets = ev.SlaTargets()
    breached: tuple[str, ...] = ()
    segments: tuple[Segment, ...] = ()
    last_metered: datetime | None = None

    @property
    def billable(self) -> bool:
        """Whether runtime is being charged right now."""
        return self.state in BILLABLE


# --- how events fold --------------------------------------------------------------------


@singledispatch
def _mutate(event: DomainEvent, deployment: Deployment | None) -> Deployment | None:
    raise NotThisAggregate(f"{type(event).__name__} is not a deployment event")


@_mutate.register
def _(event: ev.DeploymentRequested, _: None) -> Deployment:
    fields = msgspec.structs.asdict(event)
    for name in ("originator_id", "originator_version", "timestamp"):
        fields.pop(name)
    return Deployment(
        id=event.originator_id,
        version=event.originator_version,
        created_on=event.timestamp,
        modified_on=event.timestamp,
        state=State.PROVISIONING,
        **fields,
    )


_STATE_AFTER: dict[type[DomainEvent], str] = {
    ev.DeploymentActivated: "activate",
    ev.ProvisioningFailed: "fail",
    ev.ScaleRequested: "request_scale",
    ev.ScaledTo: "finish_scale",
    ev.ScaledToZero: "scale_to_zero",
    ev.DeploymentDegraded: "degrade",
    ev.DeploymentRecovered: "recover",
    ev.TeardownRequested: "request_teardown",
    ev.Destroyed: "destroy",
    ev.ReplicaStarted: "start_replica",
    ev.ReplicaLost: "lose_replica",
    ev.AutoscalingSet: "configure",
    ev.SlaTargetsSet: "configure",
    ev.SlaBreached: "observe_sla",
    ev.SlaRecovered: "observe_sla",
}


def _removed(replicas: tuple[str, ...], replica: str) -> tuple[str, ...]:
    return tuple(r for r in replicas if r != replica)


# What each event changes besides version, time and state; read as a table.
_CHANGES: dict[type[DomainEvent], Callable[[Any, Deployment], dict[str, Any]]] = {
    ev.ReplicaStarted: lambda e, d: {"replicas": (*d.replicas, e.replica)},
    ev.ReplicaLost: lambda e, d: {"replicas": _removed(d.replicas, e.replica)},
    ev.ProvisioningFailed: lambda e, d: {"failure_reason": e.reason, "replicas": ()},
    ev.ScaleRequested: lambda e, d: {"pending_capacity": e.capacity},
    ev.ScaledTo: lambda e, d: {"capacity": e.capacity, "pending_capacity": None},
    ev.ScaledToZero: lambda e, d: {"replicas": ()},
    ev.Destroyed: lambda e, d: {"replicas": ()},
    ev.DeploymentDegraded: lambda e, d: {"failure_reason": e.reason},
    ev.DeploymentRecovered: lambda e, d: {"failure_reason": None},
    ev.AutoscalingSet: lambda e, d: {"autoscaling": e.policy},
    ev.SlaTargetsSet: lambda e, d: {"sla": e.targets},
    ev.SlaBreached: lambda e, d: {"breached": tuple(sorted({*d.breached, e.metric}))},
    ev.SlaRecovered: lambda e, d: {"breached": _removed(d.breached, e.metric)},
    ev.MinuteMetered: lambda e, d: {
        "last_metered": e.minute,
        "segments": _prune(d.segments, e.minute + MINUTE),
    },
}


@_mutate.register(DomainEvent)
def _(event: DomainEvent, deployment: Deployment | None) -> Deployment:
    if deployment is None or not (type(event) in _STATE_AFTER or type(event) in _CHANGES):
        raise NotThisAggregate(f"{type(event).__name__} is not an event of a requested deployment")
    change = _CHANGES.get(type(event))
    changes = change(event, deployment) if change else {}
    name = _STATE_AFTER.get(type(event))
    state = transition(deployment.state, name) if name else deployment.state
    after = touched(deployment, event, state=state, **changes)
    return _rebill(deployment, after, _billing_clock(deployment, event.timestamp))


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
    """Close the running segment and open another whenever billability or capacity changes."""
    same_rate = before.billable == after.billable and before.capacity == after.capacity
    if same_rate:
        return after
    segments = list(after.segments)
    if before.billable and segments and segments[-1].end is None:
        segments[-1] = msgspec.structs.replace(segments[-1], end=at)
    if after.billable:
        segments.append(Segment(start=at, end=None, capacity=after.capacity))
    return msgspec.structs.replace(after, segments=tuple(s for s in segments if s.end != s.start))


def _prune(segments: tuple[Segment, ...], metered_until: datetime) -> tuple[Segment, ...]:
    """Drop segments wholly before the end of the last metered minute: nothing left to bill."""
    return tuple(s for s in segments if s.end is None or s.end > metered_until)


project_deployment = projector(_mutate)


# --- commands ---------------------------------------------------------------------------


def request_deployment(*, at: datetime, **fields: Any) -> ev.DeploymentRequested:
    """A new deployment, provisioning (the caller has validated the fields)."""
    return ev.DeploymentRequested(originator_id=uuid4(), originator_version=1, timestamp=at, **fields)


def next_event(deployment: Deployment, cls: type[DomainEvent], at: datetime, **fields: Any) -> DomainEvent:
    """The event ``cls`` at the deployment's next version, if its transition is legal now.

    Folding it once more checks the transition, so a command can never record an event
    that the state machine would refuse to replay.
    """
    version = deployment.version + 1
    event = cls(originator_id=deployment.id, originator_version=version, timestamp=at, **fields)
    _mutate(event, deployment)
    return event
