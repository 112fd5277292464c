"""The deployment lifecycle: one transition table, both dialects' names, billing segments."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import msgspec
import pytest

from modelyard.domain.accounts.aggregate import Account
from modelyard.domain.billing.pricing import Tier
from modelyard.domain.catalog.hardware import Preset
from modelyard.domain.catalog.models import Plan, Size
from modelyard.domain.deployments import aggregate as agg
from modelyard.domain.deployments import commands as cmd
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments import low_balance
from modelyard.domain.deployments.lifecycle import (
    BILLABLE,
    LIFECYCLE,
    STATUS_NAMES,
    State,
    state_after,
    status_v1,
    status_v2,
)
from modelyard.domain.shared.errors import IllegalTransition, InvalidCapacity, InvalidRequest
from modelyard.domain.shared.events import DomainEvent

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
Command = Callable[..., DomainEvent]
# Each event of the lifecycle table, the command that records it, and that command's arguments.
COMMAND_OF: dict[type[DomainEvent], tuple[Command, dict[str, Any]]] = {
    ev.DeploymentActivated: (cmd.activate, {}),
    ev.ProvisioningFailed: (cmd.fail_provisioning, {"reason": "no host"}),
    ev.CapacityAwaited: (cmd.await_capacity, {"reason": "waiting for capacity: no node has room"}),
    ev.ScaleRequested: (cmd.request_scale, {"capacity": 2}),
    ev.ScaledTo: (cmd.finish_scale, {"capacity": 2}),
    ev.ScaledToZero: (cmd.scale_to_zero, {}),
    ev.WakeRequested: (cmd.wake, {}),
    ev.DeploymentDegraded: (cmd.degrade, {"reason": "r1 lost"}),
    ev.DeploymentRecovered: (cmd.recover, {}),
    ev.TeardownRequested: (cmd.request_teardown, {}),
    ev.Destroyed: (cmd.mark_destroyed, {}),
    ev.ReplicaStarted: (cmd.start_replica, {"replica": "r9", "base_url": "http://127.0.0.1:9"}),
    ev.ReplicaLost: (cmd.lose_replica, {"replica": "r9", "reason": "exit 1"}),
    ev.AutoscalingSet: (cmd.set_autoscaling, {"policy": ev.Autoscaling(max_replicas=4)}),
    ev.SlaTargetsSet: (cmd.set_sla, {"targets": ev.SlaTargets(ttft_target_ms=500)}),
    ev.SlaBreached: (
        cmd.record_sla_breach,
        {"metric": ev.SlaMetric.TTFT_MS, "value": 900.0, "target": 500.0},
    ),
    ev.SlaRecovered: (cmd.record_sla_recovery, {"metric": ev.SlaMetric.TTFT_MS}),
    ev.LowBalanceAllowanceSet: (low_balance.set_allowance, {"allowance": ev.OnLowBalance.SCALE_TO_ZERO}),
    ev.PresetChanged: (
        low_balance.step_event,
        {"move": low_balance.Move.CHEAPER_PRESET, "reason": "low balance"},
    ),
}
# A path of legal events that reaches each state from provisioning.
PATH_TO: dict[State, list[type[DomainEvent]]] = {
    State.PROVISIONING: [],
    State.RUNNING: [ev.DeploymentActivated],
    State.SCALING: [ev.DeploymentActivated, ev.ScaleRequested],
    State.DEGRADED: [ev.DeploymentActivated, ev.DeploymentDegraded],
    State.SCALED_TO_ZERO: [ev.DeploymentActivated, ev.ScaledToZero],
    State.WAKING: [ev.DeploymentActivated, ev.ScaledToZero, ev.WakeRequested],
    State.TEARDOWN: [ev.TeardownRequested],
    State.DESTROYED: [ev.TeardownRequested, ev.Destroyed],
    State.FAILED: [ev.ProvisioningFailed],
}


def _account(balance: int = 10_000_000) -> Account:
    return Account(
        id=uuid4(), version=2, created_on=T0, modified_on=T0, name="a", plan=Plan.FREE, balance=balance
    )


def _new(capacity: int = 1) -> agg.Deployment:
    requested, _ = cmd.request_deployment(
        _account(), prefix="dep_", name="chat", model="llama3.1-8b", capacity=capacity, at=T0
    )
    deployment = agg.project_deployment(None, [requested])
    assert deployment is not None
    return deployment


def _do(
    deployment: agg.Deployment, event_type: type[DomainEvent], at: datetime = T0, **fields: Any
) -> agg.Deployment:
    command, defaults = COMMAND_OF[event_type]
    event = command(deployment, **{**defaults, **fields}, at=at)
    assert type(event) is event_type
    assert (event.originator_id, event.originator_version) == (deployment.id, deployment.version + 1)
    after = agg.project_deployment(deployment, [event])
    assert after is not None
    return after


def _in(state: State) -> agg.Deployment:
    deployment = _new()
    for event_type in PATH_TO[state]:
        deployment = _do(deployment, event_type)
    assert deployment.state is state
    return deployment


def test_a_requested_deployment_is_provisioning_with_its_fields() -> None:
    deployment = _new(capacity=4)
    assert deployment.state is State.PROVISIONING
    assert (deployment.prefix, deployment.model, deployment.capacity, deployment.preset) == (
        "dep_",
        "llama3.1-8b",
        4,
        Preset.BALANCED,
    )
    assert (deployment.size, deployment.tier) == (Size.SMALL, Tier.DEDICATED)
    assert not deployment.billable
    assert deployment.segments == ()


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("event_type", list(COMMAND_OF), ids=lambda t: t.__name__)
def test_each_command_is_accepted_exactly_where_the_table_allows(
    state: State, event_type: type[DomainEvent]
) -> None:
    deployment = _in(state)
    step = LIFECYCLE[event_type]
    if state in step.allowed:
        assert _do(deployment, event_type).state is (step.target or state)
    else:
        with pytest.raises(IllegalTransition) as caught:
            _do(deployment, event_type)
        assert state.value in caught.value.message
        assert caught.value.code == "ILLEGAL_TRANSITION"


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("event_type", list(COMMAND_OF), ids=lambda t: t.__name__)
def test_folding_refuses_what_the_commands_refuse(state: State, event_type: type[DomainEvent]) -> None:
    """An event some other writer recorded still cannot break the machine on replay."""
    command, defaults = COMMAND_OF[event_type]
    elsewhere = _in(min(LIFECYCLE[event_type].allowed))
    deployment = _in(state)
    event = msgspec.structs.replace(
        command(elsewhere, **defaults, at=T0),
        originator_id=deployment.id,
        originator_version=deployment.version + 1,
    )
    if state in LIFECYCLE[event_type].allowed:
        assert agg.project_deployment(deployment, [event]) is not None
    else:
        with pytest.raises(IllegalTransition):
            agg.project_deployment(deployment, [event])


def test_the_table_covers_every_event_that_changes_state() -> None:
    assert set(COMMAND_OF) == set(LIFECYCLE)


def test_every_state_has_a_name_in_both_dialects() -> None:
    assert set(STATUS_NAMES) == set(State)
    assert [status_v1(s) for s in State] == [
        "provisioning",
        "running",
        "scaling",
        "degraded",
        "scaled_to_zero",
        "waking",
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
        "waking",
        "teardown",
        "inactive",
        "failed",
    ]


def test_an_illegal_transition_names_both_what_and_from_where() -> None:
    with pytest.raises(IllegalTransition, match=r"Cannot destroy a deployment that is running"):
        state_after(State.RUNNING, ev.Destroyed)


def _serving_in(state: State) -> agg.Deployment:
    deployment = _do(_new(), ev.ReplicaStarted, replica="r0")
    for event_type in PATH_TO[state]:
        deployment = _do(deployment, event_type)
    assert deployment.state is state
    return deployment


def test_billing_runs_exactly_while_replicas_serve() -> None:
    assert {State.RUNNING, State.SCALING, State.DEGRADED} == BILLABLE
    for state in State:
        # A billable state with no replica serving bills nothing.
        assert not _in(state).billable
        assert _serving_in(state).billable is (state in BILLABLE)


def test_segments_follow_serving_replicas_capacity_and_idle() -> None:
    deployment = _do(_new(), ev.ReplicaStarted, T0, replica="r0")
    deployment = _do(deployment, ev.DeploymentActivated, T0 + timedelta(seconds=10, microseconds=700_000))
    deployment = _do(deployment, ev.ScaleRequested, T0 + timedelta(seconds=40), capacity=4)
    for replica in ("r1", "r2", "r3"):
        deployment = _do(deployment, ev.ReplicaStarted, T0 + timedelta(seconds=45), replica=replica)
    # Still billed at the old capacity while scaling, new replicas or not; ScaledTo bills all four.
    assert [(s.start.second, s.end, s.capacity, s.serving) for s in deployment.segments] == [(10, None, 1, 1)]
    deployment = _do(deployment, ev.ScaledTo, T0 + timedelta(seconds=50), capacity=4)
    deployment = _do(deployment, ev.ReplicaLost, T0 + timedelta(seconds=60), replica="r2", reason="exit 1")
    deployment = _do(deployment, ev.ScaledToZero, T0 + timedelta(seconds=80))
    assert [(s.start, s.end, s.capacity, s.serving) for s in deployment.segments] == [
        (T0 + timedelta(seconds=10), T0 + timedelta(seconds=50), 1, 1),
        (T0 + timedelta(seconds=50), T0 + timedelta(seconds=60), 4, 4),
        (T0 + timedelta(seconds=60), T0 + timedelta(seconds=80), 4, 3),
    ]
    assert deployment.replicas == ()
    # Woken with no replica yet: nothing billed until one serves.
    woken = _do(deployment, ev.DeploymentActivated, T0 + timedelta(seconds=200))
    assert woken.segments[-1].end == T0 + timedelta(seconds=80)
    woken = _do(woken, ev.ReplicaStarted, T0 + timedelta(seconds=205), replica="r4")
    assert woken.segments[-1] == agg.Segment(
        start=T0 + timedelta(seconds=205), end=None, capacity=4, serving=1
    )


def test_losing_every_replica_stops_billing_whatever_the_state() -> None:
    deployment = _do(_new(capacity=2), ev.ReplicaStarted, T0, replica="r0")
    deployment = _do(deployment, ev.ReplicaStarted, T0, replica="r1")
    deployment = _do(deployment, ev.DeploymentActivated, T0)
    deployment = _do(deployment, ev.ReplicaLost, T0 + timedelta(seconds=20), replica="r0", reason="exit")
    deployment = _do(deployment, ev.ReplicaLost, T0 + timedelta(seconds=30), replica="r1", reason="exit")
    assert deployment.state is State.RUNNING
    assert not deployment.billable
    assert [(s.end, s.serving) for s in deployment.segments] == [
        (T0 + timedelta(seconds=20), 2),
        (T0 + timedelta(seconds=30), 1),
    ]


def test_a_loss_found_late_stops_billing_when_the_replica_stopped() -> None:
    deployment = _do(_new(), ev.ReplicaStarted, T0, replica="r0")
    deployment = _do(deployment, ev.DeploymentActivated, T0)
    # Found after a restart at +300 s; the replica had stopped serving at +15 s.
    lost = cmd.lose_replica(
        deployment, "r0", "gone after a restart", T0 + timedelta(seconds=300), T0 + timedelta(seconds=15)
    )
    after = agg.project_deployment(deployment, [lost])
    assert after is not None
    assert [(s.start, s.end) for s in after.segments] == [(T0, T0 + timedelta(seconds=15))]
    with pytest.raises(InvalidRequest, match="after its loss is recorded"):
        cmd.lose_replica(deployment, "r0", "x", T0, T0 + timedelta(seconds=1))
    with pytest.raises(InvalidRequest, match="UTC"):
        cmd.lose_replica(deployment, "r0", "x", T0, datetime(2026, 5, 1, 9, 0))


def test_an_event_stamped_before_the_last_boundary_cannot_reorder_billing() -> None:
    deployment = _do(_new(), ev.ReplicaStarted, T0, replica="r0")
    deployment = _do(deployment, ev.DeploymentActivated, T0 + timedelta(seconds=30))
    # A writer whose clock runs behind: the segment still cannot end before it began.
    stopped = _do(deployment, ev.TeardownRequested, T0 + timedelta(seconds=20))
    assert stopped.segments == ()
    deployment = _do(deployment, ev.ScaleRequested, T0 + timedelta(seconds=40), capacity=2)
    scaled = _do(deployment, ev.ScaledTo, T0 + timedelta(seconds=35), capacity=2)
    assert [(s.start, s.end) for s in scaled.segments] == [
        (T0 + timedelta(seconds=30), T0 + timedelta(seconds=35)),
        (T0 + timedelta(seconds=35), None),
    ]


def test_replicas_failure_reason_and_sla_breaches_are_kept() -> None:
    deployment = _do(_new(), ev.ReplicaStarted, replica="r0")
    deployment = _do(deployment, ev.ReplicaStarted, replica="r1")
    deployment = _do(deployment, ev.ReplicaLost, replica="r0")
    assert deployment.replicas == ("r1",)
    deployment = _do(_do(deployment, ev.DeploymentActivated), ev.DeploymentDegraded, reason="r0 lost")
    assert deployment.failure_reason == "r0 lost"
    deployment = _do(deployment, ev.SlaBreached, metric=ev.SlaMetric.TTFT_MS)
    deployment = _do(deployment, ev.SlaBreached, metric=ev.SlaMetric.CONCURRENCY)
    assert deployment.breached == (ev.SlaMetric.CONCURRENCY, ev.SlaMetric.TTFT_MS)
    deployment = _do(deployment, ev.SlaRecovered, metric=ev.SlaMetric.TTFT_MS)
    assert deployment.breached == (ev.SlaMetric.CONCURRENCY,)
    deployment = _do(deployment, ev.DeploymentRecovered)
    assert (deployment.state, deployment.failure_reason) == (State.RUNNING, None)


def test_a_failed_provisioning_keeps_its_reason_and_drops_replicas() -> None:
    failed = _do(
        _do(_new(), ev.ReplicaStarted, replica="r0"), ev.ProvisioningFailed, reason="image pull failed"
    )
    assert (failed.state, failed.failure_reason, failed.replicas) == (State.FAILED, "image pull failed", ())


def test_a_command_never_skips_the_machine_or_a_version() -> None:
    deployment = _new()
    event = cmd.activate(deployment, T0)
    assert (event.originator_id, event.originator_version) == (deployment.id, deployment.version + 1)
    with pytest.raises(IllegalTransition):
        cmd.mark_destroyed(deployment, T0)


def test_an_sla_breach_needs_finite_figures() -> None:
    running = _in(State.RUNNING)
    with pytest.raises(InvalidRequest, match="finite"):
        cmd.record_sla_breach(running, ev.SlaMetric.TTFT_MS, float("inf"), 500.0, T0)
    with pytest.raises(InvalidRequest, match="finite"):
        cmd.record_sla_breach(running, ev.SlaMetric.TTFT_MS, 900.0, float("nan"), T0)


def test_scaling_checks_capacity_and_tier_before_the_machine() -> None:
    with pytest.raises(InvalidCapacity):
        cmd.request_scale(_in(State.RUNNING), 3, T0)
    with pytest.raises(InvalidCapacity):
        cmd.request_scale(_in(State.PROVISIONING), 3, T0)
    with pytest.raises(InvalidCapacity):
        cmd.finish_scale(_in(State.SCALING), 5, T0)


def test_a_wait_for_capacity_is_recorded_once_and_ends_when_it_runs_fails_or_goes() -> None:
    waiting = _do(_new(), ev.CapacityAwaited, T0 + timedelta(seconds=5), reason="no room")
    assert waiting.state is State.PROVISIONING  # the status stays the dialects' own
    assert (waiting.awaiting_capacity_since, waiting.awaiting_capacity_reason) == (
        T0 + timedelta(seconds=5),
        "no room",
    )
    # Another pass that finds no room records nothing: the wait began once.
    assert cmd.await_capacity(waiting, "still no room", T0 + timedelta(seconds=9)) is None
    for ends in (ev.DeploymentActivated, ev.ProvisioningFailed, ev.TeardownRequested):
        after = _do(waiting, ends, T0 + timedelta(seconds=20))
        assert (after.awaiting_capacity_since, after.awaiting_capacity_reason) == (None, None)
    with pytest.raises(IllegalTransition):
        cmd.await_capacity(_in(State.RUNNING), "no room", T0)
