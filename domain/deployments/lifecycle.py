"""The lifecycle: one explicit state machine, with each state's name in both dialects."""

from __future__ import annotations

from enum import StrEnum

from modelyard.domain.shared.errors import IllegalTransition


class State(StrEnum):
    """Where a deployment is in its life."""

    PROVISIONING = "provisioning"
    RUNNING = "running"
    SCALING = "scaling"
    DEGRADED = "degraded"
    SCALED_TO_ZERO = "scaled_to_zero"
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
    State.TEARDOWN: ("destroying", "teardown"),
    State.DESTROYED: ("destroyed", "inactive"),
    State.FAILED: ("failed", "failed"),
}

_LIVE = frozenset({State.RUNNING, State.SCALING, State.DEGRADED})
_NOT_ENDED = frozenset(set(State) - {State.TEARDOWN, State.DESTROYED})

# transition name -> (states it may happen in, state it leads to; None keeps the state)
TRANSITIONS: dict[str, tuple[frozenset[State], State | None]] = {
    "start_replica": (frozenset({State.PROVISIONING, *_LIVE, State.SCALED_TO_ZERO}), None),
    "lose_replica": (frozenset({State.PROVISIONING, *_LIVE}), None),
    "activate": (frozenset({State.PROVISIONING, State.SCALED_TO_ZERO}), State.RUNNING),
    "fail": (frozenset({State.PROVISIONING, State.SCALED_TO_ZERO, *_LIVE}), State.FAILED),
    "request_scale": (frozenset({State.RUNNING, State.DEGRADED}), State.SCALING),
    "finish_scale": (frozenset({State.SCALING}), State.RUNNING),
    "scale_to_zero": (frozenset({State.RUNNING}), State.SCALED_TO_ZERO),
    "degrade": (frozenset({State.RUNNING, State.SCALING}), State.DEGRADED),
    "recover": (frozenset({State.DEGRADED}), State.RUNNING),
    "configure": (_NOT_ENDED - {State.FAILED}, None),
    "observe_sla": (frozenset(_LIVE), None),
    "request_teardown": (frozenset(_NOT_ENDED), State.TEARDOWN),
    "destroy": (frozenset({State.TEARDOWN}), State.DESTROYED),
}

# Runtime is billed while replicas serve: these states, and no others.
BILLABLE = frozenset(_LIVE)


def transition(state: State, name: str) -> State:
    """The state after transition ``name`` from ``state``; an illegal one raises."""
    allowed, target = TRANSITIONS[name]
    if state not in allowed:
        shown = name.replace("_", " ")
        raise IllegalTransition(f"Cannot {shown} a deployment that is {state.value}.")
    return state if target is None else target


def status_v1(state: State) -> str:
    """The state as the first document (``/v1/instances``) names it."""
    return STATUS_NAMES[state][0]


def status_v2(state: State) -> str:
    """The state as the second document (``/api/v1/public/deployments``) names it."""
    return STATUS_NAMES[state][1]
