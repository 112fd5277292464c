"""A rule-based machine over the deployment lifecycle and metering.

Random sequences of commands at random times: the aggregate accepts exactly the legal
transitions, every state has both dialects' names, no minute is charged twice, and the
total charged equals the exact pro-rated price of the replica-seconds served in billable
states (capacity multiplier x serving/capacity, tracked here apart from the aggregate)
within the rounding bound (one micro-dollar per metered minute), never more.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from uuid import uuid4

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from modelyard.domain.billing.pricing import (
    CAPACITY_TENTHS,
    DEDICATED_HOURLY,
    ROUNDING_BOUND_MICROS_PER_MINUTE,
    Tier,
)
from modelyard.domain.catalog.models import Size
from modelyard.domain.deployments import aggregate as agg
from modelyard.domain.deployments import commands as cmd
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.lifecycle import BILLABLE, LIFECYCLE, status_v1, status_v2
from modelyard.domain.deployments.metering import due_minutes, meter_minute
from modelyard.domain.shared.errors import DuplicateMinute, IllegalTransition
from modelyard.domain.shared.time import whole_second

T0 = datetime(2026, 1, 1, tzinfo=UTC)
# Each command, the event it records, and its arguments besides the deployment and time.
COMMANDS: dict[str, tuple[Callable[..., ev.DomainEvent], type[ev.DomainEvent], dict[str, object]]] = {
    "activate": (cmd.activate, ev.DeploymentActivated, {}),
    "fail_provisioning": (cmd.fail_provisioning, ev.ProvisioningFailed, {"reason": "x"}),
    "await_capacity": (cmd.await_capacity, ev.CapacityAwaited, {"reason": "no room"}),
    "request_scale": (cmd.request_scale, ev.ScaleRequested, {"capacity": 4}),
    "finish_scale": (cmd.finish_scale, ev.ScaledTo, {"capacity": 4}),
    "scale_to_zero": (cmd.scale_to_zero, ev.ScaledToZero, {}),
    "wake": (cmd.wake, ev.WakeRequested, {}),
    "degrade": (cmd.degrade, ev.DeploymentDegraded, {"reason": "replica lost"}),
    "recover": (cmd.recover, ev.DeploymentRecovered, {}),
    "request_teardown": (cmd.request_teardown, ev.TeardownRequested, {}),
    "mark_destroyed": (cmd.mark_destroyed, ev.Destroyed, {}),
}
# Events after which no replica is left.
CLEARS_REPLICAS = (ev.ScaledToZero, ev.ProvisioningFailed, ev.Destroyed)


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.deployment = agg.project_deployment(
            None,
            [
                ev.DeploymentRequested(
                    originator_id=uuid4(),
                    originator_version=1,
                    timestamp=T0,
                    account_id=uuid4(),
                    prefix="inst_",
                    name="m",
                    model="m",
                    size=Size.SMALL,
                    tier=Tier.DEDICATED,
                    capacity=1,
                )
            ],
        )
        assert self.deployment is not None
        self.charged: dict[datetime, int] = {}
        # Exact cost of served time so far, in micro-dollars.
        self.exact = Fraction(0)
        # The replicas this model saw start and not stop, and the rate billed since when.
        self.replicas: set[str] = set()
        self.started = 0
        self.rate = Fraction(0)
        self.rate_since = T0

    def _model_rate(self) -> Fraction:
        """Micro-dollars per second now, from what this model tracked (not the aggregate's segments)."""
        assert self.deployment is not None
        capacity = self.deployment.capacity
        serving = min(len(self.replicas), capacity) if self.deployment.state in BILLABLE else 0
        tenths = CAPACITY_TENTHS[capacity]
        return Fraction(DEDICATED_HOURLY[Size.SMALL] * tenths * serving, 36_000 * capacity)

    def _apply(self, event: ev.DomainEvent) -> None:
        before = self.deployment
        assert before is not None
        self.deployment = agg.project_deployment(before, [event])
        assert self.deployment is not None
        if isinstance(event, ev.ReplicaStarted):
            self.replicas.add(event.replica)
        elif isinstance(event, ev.ReplicaLost):
            self.replicas.discard(event.replica)
        elif isinstance(event, CLEARS_REPLICAS):
            self.replicas.clear()
        rate = self._model_rate()
        if rate != self.rate:
            at = whole_second(event.timestamp)
            self.exact += self.rate * int((at - self.rate_since).total_seconds())
            self.rate, self.rate_since = rate, at

    @rule(seconds=st.integers(min_value=0, max_value=200), micro=st.integers(0, 999_999))
    def wait(self, seconds: int, micro: int) -> None:
        self.now += timedelta(seconds=seconds, microseconds=micro)

    @rule(name=st.sampled_from(sorted(COMMANDS)))
    def command(self, name: str) -> None:
        assert self.deployment is not None
        command, event_type, fields = COMMANDS[name]
        legal = self.deployment.state in LIFECYCLE[event_type].allowed
        try:
            event = command(self.deployment, **fields, at=self.now)
        except IllegalTransition:
            assert not legal, f"{name} refused from {self.deployment.state}"
            return
        assert legal, f"{name} accepted from {self.deployment.state}"
        if event is None:  # a wait for capacity already recorded: nothing new
            assert self.deployment.awaiting_capacity_since is not None
            return
        self._apply(event)

    @rule()
    def start_replica(self) -> None:
        assert self.deployment is not None
        self.started += 1
        legal = self.deployment.state in LIFECYCLE[ev.ReplicaStarted].allowed
        try:
            event = cmd.start_replica(self.deployment, f"r{self.started}", "http://127.0.0.1:9", self.now)
        except IllegalTransition:
            assert not legal
            return
        self._apply(event)

    @rule(which=st.integers(0, 7))
    def lose_replica(self, which: int) -> None:
        assert self.deployment is not None
        if not self.deployment.replicas:
            return
        replica = self.deployment.replicas[which % len(self.deployment.replicas)]
        try:
            event = cmd.lose_replica(self.deployment, replica, "exit 1", self.now)
        except IllegalTransition:
            assert self.deployment.state not in LIFECYCLE[ev.ReplicaLost].allowed
            return
        self._apply(event)

    @rule(duplicate=st.booleans())
    def meter(self, duplicate: bool) -> None:
        """A meter run, sometimes by two workers: the second must be refused."""
        assert self.deployment is not None
        for minute in due_minutes(self.deployment, self.now):
            metered = meter_minute(self.deployment, minute, self.now)
            if metered is None:
                continue
            assert minute not in self.charged
            self.charged[minute] = metered.amount
            stale = self.deployment
            self._apply(metered)
            if duplicate:
                try:
                    meter_minute(self.deployment, minute, self.now)
                except DuplicateMinute:
                    pass
                else:
                    raise AssertionError("a minute was metered twice")
                assert stale.last_metered != self.deployment.last_metered

    @invariant()
    def names_exist_in_both_dialects(self) -> None:
        assert self.deployment is not None
        assert status_v1(self.deployment.state)
        assert status_v2(self.deployment.state)
        assert (self._model_rate() > 0) == self.deployment.billable
        assert set(self.deployment.replicas) == self.replicas

    @invariant()
    def never_charged_more_than_served(self) -> None:
        seconds = int((whole_second(self.now) - self.rate_since).total_seconds())
        running = self.rate * max(0, seconds)
        assert sum(self.charged.values()) <= self.exact + running

    def teardown(self) -> None:
        """End the deployment, meter everything: all billable seconds charged, within the bound."""
        assert self.deployment is not None
        if self.deployment.state in LIFECYCLE[ev.TeardownRequested].allowed:
            self._apply(cmd.request_teardown(self.deployment, self.now))
        later = self.now + timedelta(minutes=2)
        for minute in due_minutes(self.deployment, later):
            metered = meter_minute(self.deployment, minute, later)
            if metered is not None:
                self.charged[minute] = metered.amount
                self._apply(metered)
        assert due_minutes(self.deployment, later) == []
        total = sum(self.charged.values())
        assert total <= self.exact
        assert self.exact - total < len(self.charged) * ROUNDING_BOUND_MICROS_PER_MINUTE + 1


Lifecycle.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestLifecycle = Lifecycle.TestCase
