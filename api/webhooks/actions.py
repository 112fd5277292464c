"""The webhook use cases, shared by both dialects' routes.

Each takes the caller, checks that the deployment is the caller's account's (either
dialect's id), and acts through the webhooks service (subscribe, remove) or on the state
store (secrets, deliveries: what replay never rebuilds). A new subscription's secret is
kept in the state store before the subscription is recorded, so no subscription exists
without one, and shown in that one answer (and in a rotation's).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID, uuid4

from modelyard.adapters.state import webhooks as stored
from modelyard.adapters.views.db import ViewDatabase
from modelyard.adapters.views.follow import ViewsFollower
from modelyard.adapters.webhooks.destinations import Network, check_destination
from modelyard.adapters.webhooks.signing import new_webhook_secret
from modelyard.api.auth import Principal
from modelyard.api.webhooks.schemas import (
    AttemptShown,
    DeliveryList,
    DeliveryListAnswer,
    DeliveryShown,
    RedriveAnswer,
    Redriven,
    Webhook,
    WebhookAnswer,
    WebhookData,
    WebhookList,
    WebhookListAnswer,
    WebhookRequest,
)
from modelyard.domain.services import Services
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import InstanceNotFound, WebhookNotFound
from modelyard.domain.webhooks.aggregate import check_url
from modelyard.domain.webhooks.service import RemoveWebhook, SubscribeWebhook
from modelyard.projections.deployments.queries import instance_for_account
from modelyard.projections.webhooks.queries import (
    Subscription,
    subscription_by_id,
    subscriptions_of_deployment,
)

# Deliveries shown per request, newest first.
DELIVERIES_SHOWN = 100


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _shown(sub: Subscription, secret: str | None = None) -> Webhook:
    return Webhook(
        id=ids.public_id(ids.WEBHOOK, sub.id),
        deployment_id=ids.deployment_ref(sub.deployment_id),
        instance_id=ids.instance_ref(sub.deployment_id),
        url=sub.url,
        events=list(sub.events),
        status="removed" if sub.removed else "active",
        created_at=sub.created_at,
        secret=secret,
    )


def _delivery(row: stored.Delivery) -> DeliveryShown:
    return DeliveryShown(
        id=row.id,
        event=row.event,
        status=row.status,
        body=row.body,
        attempts=[
            AttemptShown(at=_iso(a.at), status_code=a.status_code, error=a.error, duration_ms=a.duration_ms)
            for a in row.attempts
        ],
        created_at=_iso(row.created_at),
        updated_at=_iso(row.updated_at),
    )


class Webhooks:
    """Subscribe, list, remove, rotate; a subscription's deliveries and their re-drive."""

    def __init__(
        self,
        services: Services,
        views: ViewDatabase,
        state: ViewDatabase,
        follower: ViewsFollower,
        *,
        allowed: Sequence[Network],
        overlap_s: float,
    ) -> None:
        self._services, self._views, self._state = services, views, state
        self._follower, self._allowed, self._overlap_s = follower, tuple(allowed), overlap_s

    def _deployment(self, principal: Principal, deployment_text: str, *, live: bool = False) -> UUID:
        deployment = ids.parse_deployment_id(deployment_text)
        with self._views.read() as tx:
            row = instance_for_account(tx, principal.account_id, deployment)
        if row is None or (live and row.state == "destroyed"):
            raise InstanceNotFound(f"No deployment {deployment_text} on this account.")
        return deployment

    def _subscription(self, principal: Principal, deployment_text: str, webhook_text: str) -> Subscription:
        deployment = self._deployment(principal, deployment_text)
        webhook = ids.parse_id(webhook_text, ids.WEBHOOK)
        with self._views.read() as tx:
            found = subscription_by_id(tx, webhook)
        if found is None or found.deployment_id != deployment:
            raise WebhookNotFound(f"No webhook {webhook_text} on deployment {deployment_text}.")
        return found

    def subscribe(self, principal: Principal, deployment_text: str, request: WebhookRequest) -> WebhookAnswer:
        """Subscribe a URL; the answer shows the signing secret, this once."""
        deployment = self._deployment(principal, deployment_text, live=True)
        check_destination(check_url(request.url), self._allowed)
        webhook, secret = uuid4(), new_webhook_secret()
        with self._state.transaction() as tx:
            stored.keep_secret(tx, webhook, secret, now=time.time())
        command = SubscribeWebhook(
            deployment_id=deployment,
            url=request.url,
            events=tuple(request.events),
            at=datetime.now(UTC),
            webhook_id=webhook,
        )
        try:
            position = self._services.webhooks.subscribe(command).position
        except BaseException:
            with self._state.transaction() as tx:
                stored.forget_secrets(tx, webhook)
            raise
        self._follower.settle(webhook, position)
        with self._views.read() as tx:
            sub = subscription_by_id(tx, webhook)
        if sub is None:  # the views lag past the settle timeout: answer from the command
            sub = Subscription(
                id=webhook,
                account_id=principal.account_id,
                deployment_id=deployment,
                url=request.url,
                events=self._services.webhooks.get(webhook).events,
                removed=False,
                position=position,
                created_at=_iso(time.time()),
            )
        return WebhookAnswer(data=WebhookData(webhook=_shown(sub, secret)))

    def list(self, principal: Principal, deployment_text: str) -> WebhookListAnswer:
        """The deployment's live subscriptions, without their secrets."""
        deployment = self._deployment(principal, deployment_text)
        with self._views.read() as tx:
            subs = subscriptions_of_deployment(tx, deployment)
        shown = [_shown(s) for s in subs]
        return WebhookListAnswer(data=WebhookList(webhooks=shown, count=len(shown)))

    def remove(self, principal: Principal, deployment_text: str, webhook_text: str) -> WebhookAnswer:
        """End a subscription: its secrets are forgotten and nothing more is sent to it."""
        sub = self._subscription(principal, deployment_text, webhook_text)
        position = self._services.webhooks.remove(RemoveWebhook(webhook_id=sub.id, at=datetime.now(UTC)))
        with self._state.transaction() as tx:
            stored.forget_secrets(tx, sub.id)
        self._follower.settle(sub.id, position)
        with self._views.read() as tx:
            now = subscription_by_id(tx, sub.id) or sub
        return WebhookAnswer(data=WebhookData(webhook=_shown(now)))

    def rotate(self, principal: Principal, deployment_text: str, webhook_text: str) -> WebhookAnswer:
        """A new secret, shown this once; the ones before it keep signing for the overlap window."""
        sub = self._subscription(principal, deployment_text, webhook_text)
        if sub.removed:
            raise WebhookNotFound(f"Webhook {webhook_text} was removed.")
        secret = new_webhook_secret()
        with self._state.transaction() as tx:
            stored.rotate_secret(tx, sub.id, secret, now=time.time(), overlap_s=self._overlap_s)
        return WebhookAnswer(data=WebhookData(webhook=_shown(sub, secret)))

    def deliveries(
        self, principal: Principal, deployment_text: str, webhook_text: str, status: str | None
    ) -> DeliveryListAnswer:
        """The subscription's deliveries with every try, newest event first."""
        sub = self._subscription(principal, deployment_text, webhook_text)
        with self._state.read() as tx:
            rows = stored.deliveries_of(tx, sub.id, status=status, limit=DELIVERIES_SHOWN)
        shown = [_delivery(r) for r in rows]
        return DeliveryListAnswer(data=DeliveryList(deliveries=shown, count=len(shown)))

    def redrive(self, principal: Principal, deployment_text: str, webhook_text: str) -> RedriveAnswer:
        """Send the subscription's dead letters again (a dispatcher picks them up within a second)."""
        sub = self._subscription(principal, deployment_text, webhook_text)
        if sub.removed:
            raise WebhookNotFound(f"Webhook {webhook_text} was removed.")
        with self._state.transaction() as tx:
            count = stored.redrive(tx, sub.id, now=time.time())
        return RedriveAnswer(data=Redriven(redriven=count))
