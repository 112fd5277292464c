"""The lifecycle: one explicit state machine, with each state's name in both dialects.

``LIFECYCLE`` is the one table of it: for each deployment event, the states it may happen
in and the state it leads to. The aggregate guards its commands and folds its events with
it, and the deployments view takes its state columns from it; nothing else encodes it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from modelyard.domain.deployments import events as ev
from modelyard.domain.shared.errors import IllegalTransition
from modelyard.domain.shared.events import DomainEvent


class State(StrEnum):
    """Where a deployment is in its life."""

    PROVISIONING = "provisioning"
    RUNNING = "running"
    SCALING = "scaling"
    DEGRADED = "degraded"
    SCALED_TO_ZERO = "scaled_to_zero"
    # Cold-starting from zero because a request came: replicas start, billing starts when active.
    WAKING = "waking"
    TEARDOWN = "teardown"
    DESTROYED = "destroyed"
    FAILED = "failed"


# (first document's status, second document's status)
STATUS_NAMES: dict[State, tuple[str, str]] = {
    State.PROVISIONING: ("provisioning", "provisioning"),
    State.RUNNING: ("running", "active"),
    State.SCALING: ("scaling", "scaling"),
    State.DEGRADED: ("degraded", "degraded"),
    State.SCALED_TO_ZERO: ("scaled_to_zero", "scaled_to_zero"),
    State.WAKING: ("waking", "waking"),
    State.TEARDOWN: ("destroying", "teardown"),
    State.DESTROYED: ("destroyed", "inactive"),
    State.FAILED: ("failed", "failed"),
}

_LIVE = frozenset({State.RUNNING, State.SCALING, State.DEGRADED})
_NOT_ENDED = frozenset(set(State) - {State.TEARDOWN, State.DESTROYED})
_CONFIGURABLE = _NOT_ENDED - {State.FAILED}

# Runtime is billed while replicas serve: these states, and no others.
BILLABLE = _LIVE


class Transition(NamedTuple):
    """What an event does to the state: where it may happen, where it leads, how to say it."""

    verb: str
    allowed: frozenset[State]
    # None keeps the state as it was.
    target: State | None


LIFECYCLE: dict[type[DomainEvent], Transition] = {
    ev.ReplicaStarted: Transition(
        "start a replica of",
        frozenset({State.PROVISIONING, *_LIVE, State.SCALED_TO_ZERO, State.WAKING}),
        None,
    ),
    ev.ReplicaLost: Transition(
        "lose a replica of", frozenset({State.PROVISIONING, *_LIVE, State.WAKING}), None
    ),
    ev.DeploymentActivated: Transition(
        "activate", frozenset({State.PROVISIONING, State.SCALED_TO_ZERO, State.WAKING}), State.RUNNING
    ),
    ev.CapacityAwaited: Transition(
        "wait for capacity for", frozenset({State.PROVISIONING, State.WAKING}), None
    ),
    ev.ProvisioningFailed: Transition(
        "fail", frozenset({State.PROVISIONING, State.SCALED_TO_ZERO, State.WAKING, *_LIVE}), State.FAILED
    ),
    ev.ScaleRequested: Transition(
        "request scale of", frozenset({State.RUNNING, State.DEGRADED}), State.SCALING
    ),
    ev.ScaledTo: Transition("finish scaling", frozenset({State.SCALING}), State.RUNNING),
    ev.ScaledToZero: Transition("scale to zero", frozenset({State.RUNNING}), State.SCALED_TO_ZERO),
    ev.WakeRequested: Transition("wake", frozenset({State.SCALED_TO_ZERO}), State.WAKING),
    ev.DeploymentDegraded: Transition("degrade", frozenset({State.RUNNING, State.SCALING}), State.DEGRADED),
    ev.DeploymentRecovered: Transition("recover", frozenset({State.DEGRADED}), State.RUNNING),
    ev.AutoscalingSet: Transition("configure autoscaling of", _CONFIGURABLE, None),
    ev.SlaTargetsSet: Transition("set SLA targets of", _CONFIGURABLE, None),
    ev.SlaBreached: Transition("record an SLA breach of", _LIVE, None),
    ev.SlaRecovered: Transition("record an SLA recovery of", _LIVE, None),
    ev.LowBalanceAllowanceSet: Transition("set the low-balance allowance of", _CONFIGURABLE, None),
    ev.PresetChanged: Transition("change the preset of", _CONFIGURABLE, None),
    ev.TeardownRequested: Transition("tear down", _NOT_ENDED, State.TEARDOWN),
    ev.Destroyed: Transition("destroy", frozenset({State.TEARDOWN}), State.DESTROYED),
}


def state_after(state: State, event_type: type[DomainEvent]) -> State:
    """The state after an event of ``event_type`` from ``state``; an illegal one raises.

    An event the table does not name (a metered minute) leaves the state as it was.
    """
    step = LIFECYCLE.get(event_type)
    if step is None:
        return state
    if state not in step.allowed:
        raise IllegalTransition(f"Cannot {step.verb} a deployment that is {state.value}.")
    return state if step.target is None else step.target


def target_of(event_type: type[DomainEvent]) -> State | None:
    """The state an event of ``event_type`` always leads to, or None if it keeps the state."""
    step = LIFECYCLE.get(event_type)
    return None if step is None else step.target


def status_v1(state: State) -> str:
    """The state as the first document (``/v1/instances``) names it."""
    return STATUS_NAMES[state][0]


def status_v2(state: State) -> str:
    """The state as the second document (``/api/v1/public/deployments``) names it."""
    return STATUS_NAMES[state][1]
