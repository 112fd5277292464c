"""``Yard``: the one write-side application. Load, command, save; return ids.

Every aggregate kind lives in one event store with one notification log, so the relay,
projections and the finance replay follow a single ordered history. Methods that change
state take ``at`` (the caller's clock): the domain never reads one. Saving several
aggregates' events in one ``save`` commits them in one transaction, and eventsourcing's
optimistic concurrency refuses a writer that raced another on the same aggregate
(reported as ``ConcurrencyConflict``; the caller reloads and retries).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, Recording
from eventsourcing.utils import get_topic

from modelyard.domain.accounts import aggregate as accounts
from modelyard.domain.deployments import aggregate as deployments
from modelyard.domain.deployments import commands
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.lifecycle import State
from modelyard.domain.deployments.metering import meter_minute
from modelyard.domain.keys import aggregate as keys
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import (
    AccountNotFound,
    ConcurrencyConflict,
    DomainError,
    InstanceNotFound,
    InvalidRequest,
    KeyNotFound,
    WebhookNotFound,
)
from modelyard.domain.shared.events import Aggregate, DomainEvent, NotThisAggregate
from modelyard.domain.shared.mapper import MsgspecMapper, NullTranscoder
from modelyard.domain.shared.time import require_utc
from modelyard.domain.webhooks import aggregate as webhooks

T = TypeVar("T", bound=Aggregate)


class Yard(Application[UUID]):
    """Accounts, deployments, keys and webhooks: every command of the product."""

    name = "modelyard"
    env: ClassVar[dict[str, str]] = {
        "MAPPER_TOPIC": get_topic(MsgspecMapper),
        "TRANSCODER_TOPIC": get_topic(NullTranscoder),
    }

    # --- reading aggregates for commands ---------------------------------------------

    def _get(
        self,
        aggregate_id: UUID,
        project: Callable[[Any, Iterable[DomainEvent]], Any],
        kind: type[T],
        missing: type[DomainError],
    ) -> T:
        try:
            found = self.repository.get(aggregate_id, projector_func=project)
        except (AggregateNotFoundError, NotThisAggregate):
            raise missing(f"No {kind.__name__.lower()} {aggregate_id}.") from None
        if not isinstance(found, kind):
            raise missing(f"No {kind.__name__.lower()} {aggregate_id}.")
        return found

    def get_account(self, account_id: UUID) -> accounts.Account:
        """The account, or ACCOUNT_NOT_FOUND."""
        return self._get(account_id, accounts.project_account, accounts.Account, AccountNotFound)

    def get_deployment(self, deployment_id: UUID) -> deployments.Deployment:
        """The deployment, or INSTANCE_NOT_FOUND."""
        return self._get(
            deployment_id, deployments.project_deployment, deployments.Deployment, InstanceNotFound
        )

    def get_key(self, key_id: UUID) -> keys.ApiKey:
        """The key, or KEY_NOT_FOUND."""
        return self._get(key_id, keys.project_key, keys.ApiKey, KeyNotFound)

    def get_webhook(self, webhook_id: UUID) -> webhooks.WebhookSubscription:
        """The webhook subscription, or WEBHOOK_NOT_FOUND."""
        return self._get(webhook_id, webhooks.project_webhook, webhooks.WebhookSubscription, WebhookNotFound)

    def record(self, *events: DomainEvent) -> list[Recording[UUID]]:
        """Save events atomically; a lost race becomes ``ConcurrencyConflict``.

        Every event's time must be timezone-aware UTC: checked here, once, before anything
        is written, so a naive clock in some caller cannot put a mixed history in the store.
        """
        for event in events:
            require_utc(event.timestamp, f"time of {type(event).__name__}")
        try:
            return self.save(*events)
        except IntegrityError as exc:
            raise ConcurrencyConflict("Another writer changed this object first; retry.") from exc

    # --- accounts ----------------------------------------------------------------------

    def open_account(self, *, name: str, plan: str = "free", at: datetime) -> UUID:
        """Open an account with a zero balance."""
        event = accounts.open_account(name=name, plan=plan, at=at)
        self.record(event)
        return event.originator_id

    def add_credits(self, account_id: UUID, amount: int, *, at: datetime) -> None:
        """Credit the account ``amount`` micro-dollars."""
        self.record(accounts.add_credits(self.get_account(account_id), amount, at))

    def add_member(self, account_id: UUID, member_id: UUID, permissions: object, *, at: datetime) -> None:
        """Make the account ``member_id`` a member of the organisation ``account_id``."""
        account = self.get_account(account_id)
        self.get_account(member_id)
        self.record(accounts.add_member(account, member_id, permissions, at))

    def remove_member(self, account_id: UUID, member_id: UUID, *, at: datetime) -> None:
        """End a membership."""
        self.record(accounts.remove_member(self.get_account(account_id), member_id, at))

    # --- deployments -------------------------------------------------------------------

    def request_deployment(
        self,
        *,
        account_id: UUID,
        model: str,
        capacity: int = 1,
        tier: str = "dedicated",
        name: str = "",
        gpu_type: str | None = None,
        region: str | None = None,
        preset: str = "balanced",
        at: datetime,
        prefix: str = ids.INSTANCE,
    ) -> UUID:
        """Record a new deployment if the domain allows it (catalog, hardware, first minute's credit)."""
        event = commands.request_deployment(
            self.get_account(account_id),
            model=model,
            capacity=capacity,
            tier=tier,
            name=name,
            gpu_type=gpu_type,
            region=region,
            preset=preset,
            at=at,
            prefix=prefix,
        )
        self.record(event)
        return event.originator_id

    def provision(
        self,
        *,
        key_hash: str,
        key_display: str,
        account_id: UUID,
        model: str,
        capacity: int = 1,
        tier: str = "dedicated",
        name: str = "",
        gpu_type: str | None = None,
        region: str | None = None,
        preset: str = "balanced",
        at: datetime,
        prefix: str = ids.INSTANCE,
    ) -> tuple[UUID, UUID]:
        """Request a deployment and issue its inference key in one transaction.

        Returns (deployment id, key id); the deployment's fields are ``request_deployment``'s.
        """
        requested = commands.request_deployment(
            self.get_account(account_id),
            model=model,
            capacity=capacity,
            tier=tier,
            name=name,
            gpu_type=gpu_type,
            region=region,
            preset=preset,
            at=at,
            prefix=prefix,
        )
        key = keys.issue_key(
            account_id=requested.account_id,
            kind=keys.KeyKind.INSTANCE,
            secret_hash=key_hash,
            display=key_display,
            at=at,
            deployment_id=requested.originator_id,
        )
        self.record(requested, key)
        return requested.originator_id, key.originator_id

    def mark_replica_started(
        self, deployment_id: UUID, replica: str, *, at: datetime, base_url: str = ""
    ) -> None:
        """A replica came up healthy and answers at ``base_url``."""
        self.record(commands.start_replica(self.get_deployment(deployment_id), replica, base_url, at))

    def mark_replica_lost(self, deployment_id: UUID, replica: str, reason: str, *, at: datetime) -> None:
        """A replica died or stopped answering."""
        self.record(commands.lose_replica(self.get_deployment(deployment_id), replica, reason, at))

    def activate(self, deployment_id: UUID, *, at: datetime) -> None:
        """Enough replicas serve: running (billing starts)."""
        self.record(commands.activate(self.get_deployment(deployment_id), at))

    def fail_provisioning(self, deployment_id: UUID, reason: str, *, at: datetime) -> None:
        """The deployment cannot be placed or started."""
        self.record(commands.fail_provisioning(self.get_deployment(deployment_id), reason, at))

    def request_scale(self, deployment_id: UUID, capacity: int, *, at: datetime) -> None:
        """Ask for another capacity (1, 2, 4 or 8); shared deployments cannot scale."""
        self.record(commands.request_scale(self.get_deployment(deployment_id), capacity, at))

    def mark_scaled(self, deployment_id: UUID, capacity: int, *, at: datetime) -> None:
        """The replicas now number ``capacity``."""
        self.record(commands.finish_scale(self.get_deployment(deployment_id), capacity, at))

    def scale_to_zero(self, deployment_id: UUID, *, at: datetime) -> None:
        """Idle: release every replica (billing stops)."""
        self.record(commands.scale_to_zero(self.get_deployment(deployment_id), at))

    def degrade(self, deployment_id: UUID, reason: str, *, at: datetime) -> None:
        """Serving with fewer replicas than asked for."""
        self.record(commands.degrade(self.get_deployment(deployment_id), reason, at))

    def recover(self, deployment_id: UUID, *, at: datetime) -> None:
        """Back to full strength."""
        self.record(commands.recover(self.get_deployment(deployment_id), at))

    def set_autoscaling(self, deployment_id: UUID, policy: ev.Autoscaling, *, at: datetime) -> None:
        """Replace the autoscaling policy."""
        self.record(commands.set_autoscaling(self.get_deployment(deployment_id), policy, at))

    def set_sla(self, deployment_id: UUID, targets: ev.SlaTargets, *, at: datetime) -> None:
        """Replace the SLA targets."""
        self.record(commands.set_sla(self.get_deployment(deployment_id), targets, at))

    def record_sla_breach(
        self, deployment_id: UUID, metric: ev.SlaMetric, value: float, target: float, *, at: datetime
    ) -> None:
        """A target was missed."""
        deployment = self.get_deployment(deployment_id)
        self.record(commands.record_sla_breach(deployment, metric, value, target, at))

    def record_sla_recovery(self, deployment_id: UUID, metric: ev.SlaMetric, *, at: datetime) -> None:
        """A missed target is met again."""
        self.record(commands.record_sla_recovery(self.get_deployment(deployment_id), metric, at))

    def request_teardown(self, deployment_id: UUID, *, at: datetime) -> None:
        """Destroy: billing stops now; the replicas are stopped downstream."""
        self.record(commands.request_teardown(self.get_deployment(deployment_id), at))

    def mark_destroyed(self, deployment_id: UUID, *, at: datetime) -> None:
        """Every replica is gone."""
        self.record(commands.mark_destroyed(self.get_deployment(deployment_id), at))

    def meter(self, deployment_id: UUID, minute: datetime, *, at: datetime) -> int:
        """Meter one completed minute and charge it, atomically; returns the amount charged."""
        deployment = self.get_deployment(deployment_id)
        metered = meter_minute(deployment, minute, at)
        if metered is None:
            return 0
        account = self.get_account(deployment.account_id)
        charges = accounts.charge_minute(
            account,
            deployment_id=deployment_id,
            minute=minute,
            amount=metered.amount,
            metered_version=metered.originator_version,
            at=at,
        )
        self.record(metered, *charges)
        return metered.amount

    # --- keys --------------------------------------------------------------------------

    def issue_key(
        self,
        *,
        account_id: UUID,
        kind: keys.KeyKind,
        secret_hash: str,
        display: str,
        at: datetime,
        deployment_id: UUID | None = None,
    ) -> UUID:
        """Record a key by its hash; the caller shows the secret once."""
        self.get_account(account_id)
        event = keys.issue_key(
            account_id=account_id,
            kind=kind,
            secret_hash=secret_hash,
            display=display,
            at=at,
            deployment_id=deployment_id,
        )
        self.record(event)
        return event.originator_id

    def revoke_key(self, key_id: UUID, *, at: datetime) -> None:
        """Revoke a key."""
        self.record(keys.revoke_key(self.get_key(key_id), at))

    def grant_access(self, key_id: UUID, deployment_id: UUID, role: str, *, at: datetime) -> None:
        """Let a scoped key reach a deployment."""
        deployment = self.get_deployment(deployment_id)
        self.record(keys.grant_access(self.get_key(key_id), deployment, role, at))

    def revoke_access(self, key_id: UUID, deployment_id: UUID, *, at: datetime) -> None:
        """Withdraw a scoped key's grant."""
        self.record(keys.revoke_access(self.get_key(key_id), deployment_id, at))

    # --- webhooks ----------------------------------------------------------------------

    def subscribe_webhook(
        self, deployment_id: UUID, *, url: str, events: object, secret: str, at: datetime
    ) -> UUID:
        """Subscribe ``url`` to some of a deployment's events; returns the subscription id."""
        deployment = self.get_deployment(deployment_id)
        if deployment.state in {State.TEARDOWN, State.DESTROYED}:
            raise InvalidRequest("This deployment is being destroyed; it sends no more events.")
        event = webhooks.subscribe_webhook(
            account_id=deployment.account_id,
            deployment_id=deployment_id,
            url=url,
            events=events,
            secret=secret,
            at=at,
        )
        self.record(event)
        return event.originator_id

    def remove_webhook(self, webhook_id: UUID, *, at: datetime) -> None:
        """Stop a subscription's deliveries."""
        self.record(webhooks.remove_webhook(self.get_webhook(webhook_id), at))
