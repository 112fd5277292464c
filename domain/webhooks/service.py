"""The webhooks service: subscribe a URL to a deployment's events, remove a subscription."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from modelyard.domain.deployments import aggregate as deployments
from modelyard.domain.shared.errors import InstanceNotFound, WebhookNotFound
from modelyard.domain.shared.store import Created, Store
from modelyard.domain.webhooks import aggregate as webhooks


class SubscribeWebhook(msgspec.Struct, frozen=True, kw_only=True):
    """Subscribe ``url`` to some of one deployment's events.

    ``webhook_id`` lets the caller keep the signing secret under the id before the
    subscription is recorded (so no subscription exists whose secret was lost).
    """

    deployment_id: UUID
    url: str
    events: tuple[str, ...]
    at: datetime
    webhook_id: UUID | None = None


class RemoveWebhook(msgspec.Struct, frozen=True, kw_only=True):
    """Stop a subscription's deliveries."""

    webhook_id: UUID
    at: datetime


class WebhooksService:
    """Load, command, save: every write to webhook subscriptions goes through here."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, webhook_id: UUID) -> webhooks.WebhookSubscription:
        """The subscription, or WEBHOOK_NOT_FOUND."""
        return self._store.load(
            webhook_id, webhooks.project_webhook, webhooks.WebhookSubscription, WebhookNotFound
        )

    def subscribe(self, command: SubscribeWebhook) -> Created:
        """Subscribe; returns the subscription's id."""
        deployment = self._store.load(
            command.deployment_id, deployments.project_deployment, deployments.Deployment, InstanceNotFound
        )
        event = webhooks.subscribe_webhook(deployment, url=command.url, events=command.events, at=command.at)
        if command.webhook_id is not None:
            event = msgspec.structs.replace(event, originator_id=command.webhook_id)
        return Created(id=event.originator_id, position=self._store.record(event))

    def remove(self, command: RemoveWebhook) -> int:
        """Remove a subscription."""
        return self._store.record(webhooks.remove_webhook(self.get(command.webhook_id), command.at))
