"""Reading the subscriptions view: by deployment (the routes, the dispatcher), by account, by id."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec

from modelyard.projections.base import Tx


class Subscription(msgspec.Struct, frozen=True, kw_only=True):
    """One subscription as the view holds it."""

    id: UUID
    account_id: str
    deployment_id: UUID
    url: str
    events: tuple[str, ...]
    removed: bool
    # The notification id it was recorded at: only later events are owed to it.
    position: int
    created_at: str

    def wants(self, event_name: str) -> bool:
        """Whether a delivery of ``event_name`` is owed to it."""
        return not self.removed and event_name in self.events


_COLUMNS = "id, account_id, deployment_id, url, events, removed, position, created_at"


def _row(row: tuple[Any, ...]) -> Subscription:
    ident, account, deployment, url, events, removed, position, created = row
    return Subscription(
        id=UUID(hex=str(ident)),
        account_id=str(account),
        deployment_id=UUID(hex=str(deployment)),
        url=str(url),
        events=tuple(str(events).split(",")),
        removed=bool(removed),
        position=int(position),
        created_at=str(created),
    )


def subscriptions_of_deployment(tx: Tx, deployment_id: UUID, *, removed: bool = False) -> list[Subscription]:
    """The deployment's subscriptions, oldest first (removed ones too if ``removed``)."""
    rows = tx.execute(
        f"SELECT {_COLUMNS} FROM webhook_subscriptions WHERE deployment_id = %s"  # noqa: S608 - names are code
        " AND (removed = 0 OR %s) ORDER BY position",
        [deployment_id.hex, removed],
    )
    return [_row(row) for row in rows]


def subscriptions_of_account(tx: Tx, account_id: str) -> list[Subscription]:
    """The live subscriptions of every deployment of the account, oldest first."""
    rows = tx.execute(
        f"SELECT {_COLUMNS} FROM webhook_subscriptions"  # noqa: S608 - column names are code
        " WHERE account_id = %s AND removed = 0 ORDER BY position",
        [account_id],
    )
    return [_row(row) for row in rows]


def subscription_by_id(tx: Tx, webhook_id: UUID) -> Subscription | None:
    """One subscription (removed or not), or None."""
    rows = tx.execute(
        f"SELECT {_COLUMNS} FROM webhook_subscriptions WHERE id = %s",  # noqa: S608 - column names are code
        [webhook_id.hex],
    )
    return _row(rows[0]) if rows else None
