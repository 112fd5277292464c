"""Fold subscription events into one row per subscription.

Rows name subscriptions and deployments by ``uuid.hex`` and accounts by their public id,
as the other views do; ``events`` is the subscribed names joined by commas.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelyard.domain.webhooks.aggregate import WebhookRemoved, WebhookSubscribed
from modelyard.projections.base import OneByOne, Tx
from modelyard.projections.common import account_ref, iso

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS webhook_subscriptions (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        deployment_id TEXT NOT NULL,
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        removed INTEGER NOT NULL,
        position BIGINT NOT NULL,
        created_at TEXT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS webhook_subscriptions_deployment ON webhook_subscriptions (deployment_id)",
    "CREATE INDEX IF NOT EXISTS webhook_subscriptions_account ON webhook_subscriptions (account_id)",
)


class WebhooksProjection(OneByOne):
    """One row per subscription, removed ones kept (marked) for their deliveries' history."""

    name = "webhooks"
    schema: Sequence[str] = SCHEMA
    tables: Sequence[str] = ("webhook_subscriptions",)

    def apply(self, tx: Tx, event: object, position: int) -> None:
        """Fold one subscription event; other events pass by."""
        match event:
            case WebhookSubscribed():
                tx.execute(
                    "INSERT INTO webhook_subscriptions"
                    " (id, account_id, deployment_id, url, events, removed, position, created_at)"
                    " VALUES (%s, %s, %s, %s, %s, 0, %s, %s)",
                    [
                        event.originator_id.hex,
                        account_ref(event.account_id),
                        event.deployment_id.hex,
                        event.url,
                        ",".join(event.events),
                        position,
                        iso(event.timestamp),
                    ],
                )
            case WebhookRemoved():
                tx.execute(
                    "UPDATE webhook_subscriptions SET removed = 1 WHERE id = %s", [event.originator_id.hex]
                )
