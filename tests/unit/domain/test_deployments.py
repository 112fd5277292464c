"""The deployment lifecycle: one transition table, both dialects' names, billing segments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from modelyard.domain.deployments import aggregate as agg
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.lifecycle import (
    BILLABLE,
    STATUS_NAMES,
    TRANSITIONS,
    State,
    status_v1,
    status_v2,
    transition,
)
from modelyard.domain.shared.errors import IllegalTransition

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
EVENT_OF: dict[str, tuple[type[ev.DomainEvent], dict[str, Any]]] = {
    "activate": (ev.DeploymentActivated, {}),
    "fail": (ev.ProvisioningFailed, {"reason": "no host"}),
    "request_scale": (ev.ScaleRequested, {"capacity": 2}),
    "finish_scale": (ev.ScaledTo, {"capacity": 2}),
    "scale_to_zero": (ev.ScaledToZero, {}),
    "degrade": (ev.DeploymentDegraded, {"reason": "r1 lost"}),
    "recover": (ev.DeploymentRecovered, {}),
    "request_teardown": (ev.TeardownRequested, {}),
    "destroy": (ev.Destroyed, {}),
    "start_replica": (ev.ReplicaStarted, {"replica": "r9"}),
    "lose_replica": (ev.ReplicaLost, {"replica": "r9", "reason": "exit 1"}),
    "configure": (ev.AutoscalingSet, {"policy": ev.Autoscaling(max_replicas=4)}),
    "observe_sla": (ev.SlaBreached, {"metric": "ttft_ms", "value": 900.0, "target": 500.0}),
}
# A path of legal events that reaches each state from provisioning.
PATH_TO: dict[State, list[str]] = {
    State.PROVISIONING: [],
    State.RUNNING: ["activate"],
    State.SCALING: ["activate", "request_scale"],
    State.DEGRADED: ["activate", "degrade"],
    State.SCALED_TO_ZERO: ["activate", "scale_to_zero"],
    State.TEARDOWN: ["request_teardown"],
    State.DESTROYED: ["request_teardown", "destroy"],
    State.FAILED: ["fail"],
}


def _new(capacity: int = 1) -> agg.Deployment:
    requested = agg.request_deployment(
        at=T0,
        account_id=uuid4(),
        prefix="dep_",
        name="chat",
        model="llama3.1-8b",
        size="small",
        tier="dedicated",
        capacity=capacity,
    )
    deployment = agg.project_deployment(None, [requested])
    assert deployment is not None
    return deployment


def _do(deployment: agg.Deployment, name: str, at: datetime = T0, **fields: Any) -> agg.Deployment:
    cls, defaults = EVENT_OF[name]
    after = agg.project_deployment(
        deployment, [agg.next_event(deployment, cls, at, **{**defaults, **fields})]
    )
    assert after is not None
    return after


def _in(state: State) -> agg.Deployment:
    deployment = _new()
    for name in PATH_TO[state]:
        deployment = _do(deployment, name)
    assert deployment.state is state
    return deployment


def test_a_requested_deployment_is_provisioning_with_its_fields() -> None:
    deployment = _new(capacity=4)
    assert deployment.state is State.PROVISIONING
    assert (deployment.prefix, deployment.model, deployment.capacity, deployment.preset) == (
        "dep_",
        "llama3.1-8b",
        4,
        "balanced",
    )
    assert not deployment.billable
    assert deployment.segments == ()


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("name", sorted(EVENT_OF))
def test_each_event_is_accepted_exactly_where_the_table_allows(state: State, name: str) -> None:
    deployment = _in(state)
    allowed, target = TRANSITIONS[name]
    if state in allowed:
        assert _do(deployment, name).state is (target or state)
    else:
        with pytest.raises(IllegalTransition) as caught:
            _do(deployment, name)
        assert state.value in caught.value.message
        assert (caught.value.code, caught.value.status) == ("ILLEGAL_TRANSITION", 409)


def test_the_table_covers_every_event_that_changes_state() -> None:
    assert set(EVENT_OF) == set(TRANSITIONS)


def test_every_state_has_a_name_in_both_dialects() -> None:
    assert set(STATUS_NAMES) == set(State)
    assert [status_v1(s) for s in State] == [
        "provisioning",
        "running",
        "scaling",
        "degraded",
        "scaled_to_zero",
        "destroying",
        "destroyed",
        "failed",
    ]
    assert [status_v2(s) for s in State] == [
        "provisioning",
        "active",
        "scaling",
        "degraded",
        "scaled_to_zero",
        "teardown",
        "inactive",
        "failed",
    ]


def test_an_illegal_transition_names_both_what_and_from_where() -> None:
    with pytest.raises(IllegalTransition, match=r"Cannot destroy a deployment that is running"):
        transition(State.RUNNING, "destroy")


def test_billing_runs_exactly_while_replicas_serve() -> None:
    assert {State.RUNNING, State.SCALING, State.DEGRADED} == BILLABLE
    for state in State:
        assert _in(state).billable is (state in BILLABLE)


def test_segments_follow_activation_capacity_and_idle() -> None:
    deployment = _do(_new(), "activate", T0 + timedelta(seconds=10, microseconds=700_000))
    deployment = _do(deployment, "request_scale", T0 + timedelta(seconds=40), capacity=4)
    # Still billed at the old capacity while scaling; the new rate starts with ScaledTo.
    assert [(s.start.second, s.end, s.capacity) for s in deployment.segments] == [(10, None, 1)]
    deployment = _do(deployment, "finish_scale", T0 + timedelta(seconds=50), capacity=4)
    deployment = _do(deployment, "scale_to_zero", T0 + timedelta(seconds=80))
    assert [(s.start, s.end, s.capacity) for s in deployment.segments] == [
        (T0 + timedelta(seconds=10), T0 + timedelta(seconds=50), 1),
        (T0 + timedelta(seconds=50), T0 + timedelta(seconds=80), 4),
    ]
    assert deployment.replicas == ()
    woken = _do(deployment, "activate", T0 + timedelta(seconds=200))
    assert woken.segments[-1] == agg.Segment(start=T0 + timedelta(seconds=200), end=None, capacity=4)


def test_an_event_stamped_before_the_last_boundary_cannot_reorder_billing() -> None:
    deployment = _do(_new(), "activate", T0 + timedelta(seconds=30))
    # A writer whose clock runs behind: the segment still cannot end before it began.
    stopped = _do(deployment, "request_teardown", T0 + timedelta(seconds=20))
    assert stopped.segments == ()
    deployment = _do(deployment, "request_scale", T0 + timedelta(seconds=40), capacity=2)
    scaled = _do(deployment, "finish_scale", T0 + timedelta(seconds=35), capacity=2)
    assert [(s.start, s.end) for s in scaled.segments] == [
        (T0 + timedelta(seconds=30), T0 + timedelta(seconds=35)),
        (T0 + timedelta(seconds=35), None),
    ]


def test_replicas_failure_reason_and_sla_breaches_are_kept() -> None:
    deployment = _do(_new(), "start_replica", replica="r0")
    deployment = _do(deployment, "start_replica", replica="r1")
    deployment = _do(deployment, "lose_replica", replica="r0")
    assert deployment.replicas == ("r1",)
    deployment = _do(_do(deployment, "activate"), "degrade", reason="r0 lost")
    assert deployment.failure_reason == "r0 lost"
    deployment = _do(deployment, "observe_sla", metric="ttft_ms")
    assert deployment.breached == ("ttft_ms",)
    recovered = agg.next_event(deployment, ev.SlaRecovered, T0, metric="ttft_ms")
    deployment = agg.project_deployment(deployment, [recovered])
    assert deployment is not None
    assert deployment.breached == ()
    deployment = _do(deployment, "recover")
    assert (deployment.state, deployment.failure_reason) == (State.RUNNING, None)


def test_a_failed_provisioning_keeps_its_reason_and_drops_replicas() -> None:
    failed = _do(_do(_new(), "start_replica", replica="r0"), "fail", reason="image pull failed")
    assert (failed.state, failed.failure_reason, failed.replicas) == (State.FAILED, "image pull failed", ())


def test_replica_failed_is_the_same_fact_as_replica_lost() -> None:
    assert ev.ReplicaFailed is ev.ReplicaLost


def test_next_event_is_at_the_next_version_and_never_skips_the_machine() -> None:
    deployment = _new()
    event = agg.next_event(deployment, ev.DeploymentActivated, T0)
    assert (event.originator_id, event.originator_version) == (deployment.id, deployment.version + 1)
    with pytest.raises(IllegalTransition):
        agg.next_event(deployment, ev.Destroyed, T0)
