"""The deployments service: request, provision, run through the lifecycle, meter.

Each method loads the deployment, asks the aggregate's command for its events, and
records them; it returns the position of the last event recorded, which a reader waits
for to see the effect (read-your-writes). Rules live in the aggregate's commands.

Commands that admit, grow or end a deployment also write the account's hold
(``accounts.reservations``) in the same record, so they contend for the account's next
version with every other spender. One that loses (``ConcurrencyConflict``) is decided
again on freshly loaded state, up to ``ATTEMPTS`` times: a retry re-checks every rule, so
it can never pass a check its first try would have failed on newer state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from uuid import UUID

import msgspec

from modelyard.domain.accounts import aggregate as accounts
from modelyard.domain.accounts import reservations
from modelyard.domain.catalog.fit import HostCapacity
from modelyard.domain.catalog.models import ModelSpec, Plan
from modelyard.domain.catalog.plans import PLAN_QUOTAS, Quota
from modelyard.domain.deployments import aggregate as deployments
from modelyard.domain.deployments import commands, quotes
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.lifecycle import State
from modelyard.domain.deployments.metering import due_minutes, meter_minute
from modelyard.domain.deployments.settlement import settle_on_teardown
from modelyard.domain.deployments.sla import Measured, Verdict, judge
from modelyard.domain.keys import aggregate as keys
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import (
    AccountNotFound,
    ConcurrencyConflict,
    DuplicateMinute,
    InstanceNotFound,
    InvalidModel,
)
from modelyard.domain.shared.events import DomainEvent
from modelyard.domain.shared.store import A, Created, Projector, Store
from modelyard.domain.uploads import aggregate as uploads

log = logging.getLogger(__name__)
# Events in one metering transaction at most: a meter catching up after downtime writes
# its backlog in several.
METER_BATCH = 1_000

# How often a command that lost a race on the account is decided again. Each lost round
# means another writer's command was recorded, so some writer always makes progress.
ATTEMPTS = 10


class RequestDeployment(msgspec.Struct, frozen=True, kw_only=True):
    """Ask for a new deployment of ``model``; the plan's quota must have room and the
    available credit cover its hold (its first minute)."""

    account_id: UUID
    model: str
    capacity: int = 1
    tier: str = "dedicated"
    name: str = ""
    gpu_type: str | None = None
    region: str | None = None
    preset: str = "balanced"
    # Which dialect asked (``inst_`` or ``dep_``): recorded, never read by the domain.
    prefix: str = ids.INSTANCE
    # The new deployment's id, if the caller chose it (an idempotent retry names the one its
    # first attempt may have made: the store refuses a second under the same id).
    deployment_id: UUID | None = None
    # The upload a ``byom:<name>`` model is (the account's own, ready).
    upload_id: UUID | None = None
    at: datetime


class Provision(msgspec.Struct, frozen=True, kw_only=True):
    """Request a deployment and issue its inference key, in one transaction."""

    deployment: RequestDeployment
    key_hash: str
    key_display: str


class Provisioned(msgspec.Struct, frozen=True, kw_only=True):
    """A provisioned deployment, its inference key, and the position of the last event."""

    id: UUID
    key_id: UUID
    position: int


class OnDeployment(msgspec.Struct, frozen=True, kw_only=True):
    """A lifecycle command that needs only the deployment and the time."""

    deployment_id: UUID
    at: datetime


class ReplicaCommand(OnDeployment, frozen=True, kw_only=True):
    """A replica came up (at ``base_url``, checking ``token``) or went away (for ``reason``,
    since ``lost_at`` when that is known to be earlier: billing stops there)."""

    replica: str
    base_url: str = ""
    token: str = ""
    reason: str = ""
    lost_at: datetime | None = None


class WithReason(OnDeployment, frozen=True, kw_only=True):
    """A failure or degradation, and why."""

    reason: str


class WithCapacity(OnDeployment, frozen=True, kw_only=True):
    """Ask for, or report, a capacity (1, 2, 4 or 8); ``reason`` is why the autoscaler asks."""

    capacity: int
    reason: str = ""


class SetAutoscaling(OnDeployment, frozen=True, kw_only=True):
    """Replace the autoscaling policy."""

    policy: ev.Autoscaling


class SetSla(OnDeployment, frozen=True, kw_only=True):
    """Replace the SLA targets."""

    targets: ev.SlaTargets


class SlaObservation(OnDeployment, frozen=True, kw_only=True):
    """A target missed (with the figure and the target) or met again."""

    metric: ev.SlaMetric
    value: float = 0.0
    target: float = 0.0


class SlaWindow(OnDeployment, frozen=True, kw_only=True):
    """What one window measured of a deployment, to judge against its SLA targets."""

    measured: Measured


class Judged(msgspec.Struct, frozen=True, kw_only=True):
    """The breaches and recoveries a window recorded (none: nothing changed) and the position."""

    verdicts: list[Verdict]
    position: int


class MeterMinute(OnDeployment, frozen=True, kw_only=True):
    """Meter one completed UTC minute of runtime and charge it."""

    minute: datetime


class MeterDue(msgspec.Struct, frozen=True, kw_only=True):
    """Meter and charge every completed, unmetered minute of these deployments as of ``at``.

    ``most`` bounds the minutes metered (what a worker that dies part-way got done).
    """

    deployment_ids: tuple[UUID, ...]
    at: datetime
    most: int | None = None


class Metered(msgspec.Struct, frozen=True, kw_only=True):
    """What metering one minute charged (0 when nothing was due) and its position."""

    amount: int
    position: int


def project_after(
    deployment: deployments.Deployment, events: Sequence[DomainEvent]
) -> deployments.Deployment:
    """The deployment after ``events`` decided but not yet recorded (the next command's base)."""
    after = deployments.project_deployment(deployment, events)
    if not isinstance(after, deployments.Deployment):  # pragma: no cover - a deployment stays one
        raise TypeError("events of a deployment folded into something else")
    return after


class DeploymentsService:
    """Load, command, save: every write to deployments goes through here."""

    def __init__(
        self,
        store: Store,
        quotas: Mapping[Plan, Quota] = PLAN_QUOTAS,
        host: HostCapacity | Callable[[], HostCapacity] | None = None,
    ) -> None:
        self._store = store
        self._quotas = quotas
        # What the cluster can place (or how to read it now, for a cluster whose nodes come
        # and go); None admits any catalog model (fit is not checked).
        self._host = host

    def _host_now(self) -> HostCapacity | None:
        return self._host() if callable(self._host) else self._host

    def _recorded(self, decide: Callable[[], Sequence[DomainEvent | None]]) -> tuple[int, list[DomainEvent]]:
        """Record what ``decide`` returns (Nones dropped); on a lost race, decide again.

        Returns the position of the last event and the events recorded.
        """
        for attempt in range(1, ATTEMPTS + 1):
            events = [e for e in decide() if e is not None]
            try:
                return self._store.record(*events), events
            except ConcurrencyConflict:
                if attempt == ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _decided(self, decide: Callable[[], Sequence[DomainEvent | None]]) -> int:
        """``_recorded``'s position."""
        return self._recorded(decide)[0]

    def get(self, deployment_id: UUID) -> deployments.Deployment:
        """The deployment, or INSTANCE_NOT_FOUND."""
        return self._store.load(
            deployment_id, deployments.project_deployment, deployments.Deployment, InstanceNotFound
        )

    def _account(self, account_id: UUID) -> accounts.Account:
        return self._store.load(account_id, accounts.project_account, accounts.Account, AccountNotFound)

    def _uploaded(self, command: RequestDeployment) -> ModelSpec | None:
        if command.upload_id is None:
            return None
        found = self._store.load(command.upload_id, uploads.project_upload, uploads.ModelUpload, InvalidModel)
        return uploads.served_model(found, command.account_id, command.model)

    def _requested(self, command: RequestDeployment) -> commands.Admitted:
        return commands.request_deployment(
            self._account(command.account_id),
            model=command.model,
            capacity=command.capacity,
            tier=command.tier,
            name=command.name,
            gpu_type=command.gpu_type,
            region=command.region,
            preset=command.preset,
            at=command.at,
            prefix=command.prefix,
            quotas=self._quotas,
            deployment_id=command.deployment_id,
            host=self._host_now(),
            uploaded=self._uploaded(command),
        )

    def _reserve(
        self, deployment: deployments.Deployment, *capacities: int, at: datetime
    ) -> accounts.CreditReserved:
        """The hold for ``deployment`` at the largest of ``capacities``, if quota and credit allow."""
        amount, replicas = commands.hold_of(deployment, *capacities)
        return reservations.reserve(
            self._account(deployment.account_id),
            deployment_id=deployment.id,
            amount=amount,
            replicas=replicas,
            at=at,
            quotas=self._quotas,
        )

    def _release(self, deployment: deployments.Deployment, at: datetime) -> accounts.CreditReleased | None:
        account = self._account(deployment.account_id)
        return reservations.release(account, deployment_id=deployment.id, at=at)

    def request(self, command: RequestDeployment) -> Created:
        """Record a new deployment (provisioning) and its hold; returns its id."""
        position, events = self._recorded(lambda: self._requested(command))
        return Created(id=events[0].originator_id, position=position)

    def quote(self, command: RequestDeployment) -> quotes.Quote:
        """What ``command`` would cost, and whether it would be admitted now; records nothing."""
        return quotes.quote_deployment(
            self._account(command.account_id),
            model=command.model,
            capacity=command.capacity,
            tier=command.tier,
            gpu_type=command.gpu_type,
            region=command.region,
            preset=command.preset,
            at=command.at,
            quotas=self._quotas,
            host=self._host_now(),
        )

    def provision(self, command: Provision) -> Provisioned:
        """Request a deployment, hold its credit and issue its instance key, together."""

        def decide() -> list[DomainEvent]:
            requested, reserved = self._requested(command.deployment)
            key = keys.issue_key(
                account_id=requested.account_id,
                kind=keys.KeyKind.INSTANCE,
                secret_hash=command.key_hash,
                display=command.key_display,
                at=command.deployment.at,
                deployment_id=requested.originator_id,
            )
            return [requested, key, reserved]

        position, (requested, key, _) = self._recorded(decide)
        return Provisioned(id=requested.originator_id, key_id=key.originator_id, position=position)

    def start_replica(self, command: ReplicaCommand) -> int:
        """A replica came up healthy and answers at ``base_url``."""
        deployment = self.get(command.deployment_id)
        return self._store.record(
            commands.start_replica(deployment, command.replica, command.base_url, command.at, command.token)
        )

    def lose_replica(self, command: ReplicaCommand) -> int:
        """A replica died, stopped answering, or was scaled away."""
        deployment = self.get(command.deployment_id)
        return self._store.record(
            commands.lose_replica(deployment, command.replica, command.reason, command.at, command.lost_at)
        )

    def activate(self, command: OnDeployment) -> int:
        """Enough replicas serve: running (billing starts); waking from zero holds credit again."""

        def decide() -> list[DomainEvent]:
            deployment = self.get(command.deployment_id)
            activated = commands.activate(deployment, command.at)
            if deployment.state is not State.SCALED_TO_ZERO:
                return [activated]
            return [activated, self._reserve(deployment, deployment.capacity, at=command.at)]

        return self._decided(decide)

    def fail_provisioning(self, command: WithReason) -> int:
        """The deployment cannot be placed or started: it ends, and its hold is released."""

        def decide() -> list[DomainEvent | None]:
            deployment = self.get(command.deployment_id)
            failed = commands.fail_provisioning(deployment, command.reason, command.at)
            return [failed, self._release(deployment, command.at)]

        return self._decided(decide)

    def await_capacity(self, command: WithReason) -> int:
        """No node has room for its replicas now: say so, once a wait (0 when it already waits)."""

        def decide() -> list[DomainEvent | None]:
            return [commands.await_capacity(self.get(command.deployment_id), command.reason, command.at)]

        return self._decided(decide)

    def request_scale(self, command: WithCapacity) -> int:
        """Ask for another capacity, holding the larger price; shared deployments cannot scale."""

        def decide() -> list[DomainEvent]:
            deployment = self.get(command.deployment_id)
            asked = commands.request_scale(deployment, command.capacity, command.at, command.reason)
            return [asked, self._reserve(deployment, deployment.capacity, asked.capacity, at=command.at)]

        return self._decided(decide)

    def finish_scale(self, command: WithCapacity) -> int:
        """The replicas now number ``capacity``; the hold shrinks to what runs."""

        def decide() -> list[DomainEvent | None]:
            deployment = self.get(command.deployment_id)
            scaled = commands.finish_scale(deployment, command.capacity, command.at)
            amount, replicas = commands.hold_of(deployment, scaled.capacity)
            account = self._account(deployment.account_id)
            held = reservations.settle(
                account, deployment_id=deployment.id, amount=amount, replicas=replicas, at=command.at
            )
            return [scaled, held]

        return self._decided(decide)

    def scale_to_zero(self, command: OnDeployment | WithReason) -> int:
        """Idle: release every replica (billing stops) and the hold."""
        reason = command.reason if isinstance(command, WithReason) else ""

        def decide() -> list[DomainEvent | None]:
            deployment = self.get(command.deployment_id)
            idle = commands.scale_to_zero(deployment, command.at, reason)
            return [idle, self._release(deployment, command.at)]

        return self._decided(decide)

    def wake(self, command: OnDeployment) -> int:
        """Cold-start a deployment scaled to zero, holding credit for its capacity again."""

        def decide() -> list[DomainEvent]:
            deployment = self.get(command.deployment_id)
            woken = commands.wake(deployment, command.at)
            return [woken, self._reserve(deployment, deployment.capacity, at=command.at)]

        return self._decided(decide)

    def degrade(self, command: WithReason) -> int:
        """Serving with fewer replicas than asked for."""
        deployment = self.get(command.deployment_id)
        return self._store.record(commands.degrade(deployment, command.reason, command.at))

    def recover(self, command: OnDeployment) -> int:
        """Back to full strength."""
        return self._store.record(commands.recover(self.get(command.deployment_id), command.at))

    def set_autoscaling(self, command: SetAutoscaling) -> int:
        """Replace the autoscaling policy."""
        deployment = self.get(command.deployment_id)
        return self._store.record(commands.set_autoscaling(deployment, command.policy, command.at))

    def set_sla(self, command: SetSla) -> int:
        """Replace the SLA targets."""
        deployment = self.get(command.deployment_id)
        return self._store.record(commands.set_sla(deployment, command.targets, command.at))

    def record_sla_breach(self, command: SlaObservation) -> int:
        """A target was missed."""
        deployment = self.get(command.deployment_id)
        event = commands.record_sla_breach(
            deployment, command.metric, command.value, command.target, command.at
        )
        return self._store.record(event)

    def record_sla_recovery(self, command: SlaObservation) -> int:
        """A missed target is met again."""
        deployment = self.get(command.deployment_id)
        return self._store.record(commands.record_sla_recovery(deployment, command.metric, command.at))

    def judge_sla(self, command: SlaWindow) -> Judged:
        """Record the breaches and recoveries a window's figures make of the SLA targets."""
        deployment = self.get(command.deployment_id)
        verdicts = judge(deployment.sla, deployment.breached, command.measured)
        events: list[DomainEvent] = []
        for verdict in verdicts:
            latest = project_after(deployment, events)
            if verdict.breached:
                events.append(
                    commands.record_sla_breach(
                        latest, verdict.metric, verdict.value, verdict.target, command.at
                    )
                )
            else:
                events.append(commands.record_sla_recovery(latest, verdict.metric, command.at))
        position = self._store.record(*events) if events else 0
        return Judged(verdicts=verdicts, position=position)

    def request_teardown(self, command: OnDeployment) -> int:
        """Destroy: billing stops now, the minutes still owed (the last partial one too) are
        charged in the same record, and the hold is released; replicas stop downstream."""

        def decide() -> list[DomainEvent | None]:
            deployment = self.get(command.deployment_id)
            teardown = commands.request_teardown(deployment, command.at)
            account = self._account(deployment.account_id)
            settled = settle_on_teardown(deployment, teardown, account, command.at)
            released = reservations.release(settled.account, deployment_id=deployment.id, at=command.at)
            return [teardown, *settled.events, released]

        return self._decided(decide)

    def mark_destroyed(self, command: OnDeployment) -> int:
        """Every replica is gone."""
        return self._store.record(commands.mark_destroyed(self.get(command.deployment_id), command.at))

    def meter(self, command: MeterMinute) -> Metered:
        """Meter one completed minute and charge it, atomically."""
        deployment = self.get(command.deployment_id)
        metered = meter_minute(deployment, command.minute, command.at)
        if metered is None:
            return Metered(amount=0, position=0)
        charges = accounts.charge_minute(
            self._account(deployment.account_id),
            deployment_id=deployment.id,
            minute=command.minute,
            amount=metered.amount,
            metered_version=metered.originator_version,
            at=command.at,
        )
        return Metered(amount=metered.amount, position=self._store.record(metered, *charges))

    def meter_due(self, command: MeterDue) -> int:
        """Meter every due minute of the deployments, one transaction per account; the count.

        The meter's tick. Per account it reads the account and each of its deployments
        (cached, fast-forwarded: a few rows) and writes, in one transaction, each due
        minute's ``MinuteMetered`` on its deployment and ``CreditsCharged`` on the account,
        each at the next version of its aggregate. A raced meter's transaction conflicts
        and writes nothing; it is decided again on fresh state, where the minutes the other
        meter charged are no longer due. So every minute is charged once, whoever crashes.
        """
        by_account: dict[UUID, list[UUID]] = {}
        for deployment_id in command.deployment_ids:
            # A deployment's account never changes: any cached copy names it.
            known = self._store.peek(deployment_id, deployments.Deployment) or self.get(deployment_id)
            by_account.setdefault(known.account_id, []).append(deployment_id)
        charged = 0
        for account_id, deployment_ids in by_account.items():
            most = None if command.most is None else command.most - charged
            charged += self._meter_account(account_id, deployment_ids, command.at, most)
        return charged

    def _meter_account(
        self, account_id: UUID, deployment_ids: Sequence[UUID], at: datetime, most: int | None
    ) -> int:
        charged = lost = 0
        while most is None or charged < most:
            events, complete = self._due_events(
                account_id, deployment_ids, at, None if most is None else most - charged
            )
            if not events:
                break
            try:
                self._store.record(*events)
            except ConcurrencyConflict:
                lost += 1
                if lost == ATTEMPTS:
                    break  # another meter is at work on this account; it carries on from here
                continue
            charged += sum(isinstance(e, ev.MinuteMetered) for e in events)
            if complete:
                break
        return charged

    def _due_events(
        self, account_id: UUID, deployment_ids: Sequence[UUID], at: datetime, most: int | None
    ) -> tuple[list[DomainEvent], bool]:
        """One account's due minutes and their charges (at most ``METER_BATCH`` events), and
        whether that is all of them."""
        account = self._account(account_id)
        events: list[DomainEvent] = []
        minutes = 0
        for deployment_id in deployment_ids:
            deployment = self.get(deployment_id)
            for minute in due_minutes(deployment, at):
                if len(events) >= METER_BATCH or (most is not None and minutes >= most):
                    return events, False
                metered = meter_minute(deployment, minute, at)
                if metered is None:
                    continue
                try:
                    charges = accounts.charge_minute(
                        account,
                        deployment_id=deployment.id,
                        minute=minute,
                        amount=metered.amount,
                        metered_version=metered.originator_version,
                        at=at,
                    )
                except DuplicateMinute:
                    log.warning("minute %s of %s is charged but not metered", minute, deployment_id)
                    break
                deployment = _folded(deployments.project_deployment, deployment, metered)
                account = _folded(accounts.project_account, account, *charges)
                events += [metered, *charges]
                minutes += 1
        return events, True


def _folded(project: Projector[A], state: A, *new: DomainEvent) -> A:
    """``state`` after ``new``: what the store will load once they are recorded."""
    after = project(state, new)
    assert after is not None
    return after
