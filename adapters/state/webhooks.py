"""Webhook state that replay never touches: signing secrets, and every delivery's attempts.

Secrets: one row per secret of a subscription. A new subscription has one; a rotation adds
the next and gives the ones before an end (``expires_at``, the overlap window), so for a
while deliveries carry a signature by each live secret and a receiver can switch at its own
pace. A removed subscription's secrets are deleted.

Deliveries: one row per (event, subscription), named by the ``webhook-id`` it is sent with
(``msg_<notification id>_<subscription hex>``: the same on every try and after any crash, so
a receiver drops repeats by it). ``status`` is ``pending`` while tried, then ``delivered``
or ``dead`` (every try failed: the dead letter, listed and re-driven from here), or
``cancelled`` (the subscription was removed first); ``redrive`` asks a dispatcher to send a
dead letter again. ``attempts`` holds every try (JSON). Rows name subscriptions by
``uuid.hex``.

A dispatcher sends a pending delivery only while it holds the row's lease (``owner``,
``lease_until``: a try's timeout and a margin, renewed over each pause between tries). After
a rebalance the new owner of a deployment's events finds a delivery still leased to the old
one and waits for it to end or for the lease to run out (the old one died): two live
dispatchers never send the same delivery at once, and one that died mid-try is replaced
only after its try could no longer be answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import msgspec

from modelyard.projections.base import Tx

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS webhook_secrets (
        webhook_id TEXT NOT NULL,
        secret TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION,
        PRIMARY KEY (webhook_id, secret)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS webhook_deliveries (
        id TEXT PRIMARY KEY,
        webhook_id TEXT NOT NULL,
        ordering_key TEXT NOT NULL,
        event TEXT NOT NULL,
        notification_id BIGINT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        owner TEXT,
        lease_until DOUBLE PRECISION
    )
    """,
    "CREATE INDEX IF NOT EXISTS webhook_deliveries_by_webhook"
    " ON webhook_deliveries (webhook_id, notification_id)",
    "CREATE INDEX IF NOT EXISTS webhook_deliveries_by_status ON webhook_deliveries (status)",
)

PENDING, DELIVERED, DEAD, CANCELLED, REDRIVE = "pending", "delivered", "dead", "cancelled", "redrive"
#: A delivery in one of these states is owed nothing more (unless re-driven).
FINAL = (DELIVERED, DEAD, CANCELLED)


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One try: when, the receiver's status (None: no answer), what failed, how long it took."""

    at: float
    status_code: int | None
    error: str | None
    duration_ms: int


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One event owed to one subscription, with every try so far."""

    id: str
    webhook_id: UUID
    ordering_key: str
    event: str
    notification_id: int
    body: str
    status: str
    attempts: tuple[Attempt, ...]
    created_at: float
    updated_at: float


_attempts = msgspec.json.Decoder(tuple[Attempt, ...])
_encode = msgspec.json.Encoder()
_COLUMNS = (
    "id, webhook_id, ordering_key, event, notification_id, body, status, attempts, created_at, updated_at"
)


# --- secrets ----------------------------------------------------------------------------


def keep_secret(tx: Tx, webhook_id: UUID, secret: str, *, now: float) -> None:
    """Hold a subscription's first secret."""
    tx.execute(
        "INSERT INTO webhook_secrets (webhook_id, secret, created_at, expires_at) VALUES (%s, %s, %s, NULL)",
        [webhook_id.hex, secret, now],
    )


def rotate_secret(tx: Tx, webhook_id: UUID, secret: str, *, now: float, overlap_s: float) -> None:
    """Make ``secret`` the newest; the live ones before it stay valid ``overlap_s`` more seconds."""
    tx.execute(
        "UPDATE webhook_secrets SET expires_at = %s"
        " WHERE webhook_id = %s AND (expires_at IS NULL OR expires_at > %s)",
        [now + overlap_s, webhook_id.hex, now + overlap_s],
    )
    tx.execute(
        "DELETE FROM webhook_secrets WHERE webhook_id = %s AND expires_at <= %s", [webhook_id.hex, now]
    )
    keep_secret(tx, webhook_id, secret, now=now)


def live_secrets(tx: Tx, webhook_id: UUID, *, now: float) -> list[str]:
    """The secrets deliveries are signed with now, newest first (none: the subscription is gone)."""
    rows = tx.execute(
        "SELECT secret FROM webhook_secrets WHERE webhook_id = %s AND (expires_at IS NULL OR expires_at > %s)"
        " ORDER BY created_at DESC",
        [webhook_id.hex, now],
    )
    return [str(row[0]) for row in rows]


def forget_secrets(tx: Tx, webhook_id: UUID) -> None:
    """The subscription ended: nothing is signed for it again."""
    tx.execute("DELETE FROM webhook_secrets WHERE webhook_id = %s", [webhook_id.hex])


# --- deliveries -------------------------------------------------------------------------


def _values(delivery: Delivery) -> list[object]:
    return [
        delivery.id,
        delivery.webhook_id.hex,
        delivery.ordering_key,
        delivery.event,
        delivery.notification_id,
        delivery.body,
        delivery.status,
        _encode.encode(delivery.attempts).decode(),
        delivery.created_at,
        delivery.updated_at,
    ]


def claim_delivery(tx: Tx, delivery: Delivery, owner: str, *, now: float, lease_s: float) -> Delivery | None:
    """Take the lease of a delivery to send it (recording it if new).

    Returns the recorded delivery if ``owner`` now holds it or it is already final (the
    caller sends nothing then), None while another dispatcher's lease on it runs.
    """
    tx.execute(
        f"INSERT INTO webhook_deliveries ({_COLUMNS}, owner, lease_until)"  # noqa: S608 - column names are code
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (id) DO UPDATE SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until"
        " WHERE webhook_deliveries.status = %s AND (webhook_deliveries.owner IS NULL"
        " OR webhook_deliveries.owner = EXCLUDED.owner OR webhook_deliveries.lease_until < %s)",
        [*_values(delivery), owner, now + lease_s, PENDING, now],
    )
    rows = tx.execute("SELECT owner, status FROM webhook_deliveries WHERE id = %s", [delivery.id])
    holder, status = rows[0]
    if str(status) not in FINAL and holder != owner:
        return None
    return delivery_by_id(tx, delivery.id)


def save_delivery(tx: Tx, delivery: Delivery, *, lease_until: float | None = None) -> None:
    """Record a delivery's tries and status (its first record, or over the one before),
    and how long its holder's lease now runs."""
    tx.execute(
        f"INSERT INTO webhook_deliveries ({_COLUMNS}, lease_until)"  # noqa: S608 - column names are code
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (id) DO UPDATE SET attempts = EXCLUDED.attempts, status = EXCLUDED.status,"
        " updated_at = EXCLUDED.updated_at, lease_until = EXCLUDED.lease_until",
        [*_values(delivery), lease_until],
    )


def delivery_by_id(tx: Tx, delivery_id: str) -> Delivery | None:
    """One delivery, or None."""
    rows = tx.execute(
        f"SELECT {_COLUMNS} FROM webhook_deliveries WHERE id = %s",  # noqa: S608 - column names are code
        [delivery_id],
    )
    return _delivery(rows[0]) if rows else None


def deliveries_of(tx: Tx, webhook_id: UUID, *, status: str | None = None, limit: int = 100) -> list[Delivery]:
    """A subscription's deliveries, newest event first (only those in ``status`` if given)."""
    where, params = "webhook_id = %s", [webhook_id.hex]
    if status is not None:
        where, params = where + " AND status = %s", [*params, status]
    rows = tx.execute(
        f"SELECT {_COLUMNS} FROM webhook_deliveries WHERE {where}"  # noqa: S608 - names are code
        " ORDER BY notification_id DESC LIMIT %s",
        [*params, limit],
    )
    return [_delivery(row) for row in rows]


def redrive(tx: Tx, webhook_id: UUID, *, now: float) -> int:
    """Ask the dispatchers to send a subscription's dead letters again; returns how many."""
    rows = tx.execute(
        "UPDATE webhook_deliveries SET status = %s, updated_at = %s WHERE webhook_id = %s AND status = %s"
        " RETURNING id",
        [REDRIVE, now, webhook_id.hex, DEAD],
    )
    return len(rows)


def claim_redriven(tx: Tx, *, now: float, limit: int = 100) -> list[Delivery]:
    """Take re-driven dead letters to send again (one dispatcher gets each), oldest event first."""
    rows = tx.execute(
        f"SELECT {_COLUMNS} FROM webhook_deliveries WHERE status = %s"  # noqa: S608 - column names are code
        " ORDER BY notification_id LIMIT %s",
        [REDRIVE, limit],
    )
    claimed: list[Delivery] = []
    for row in rows:
        taken = tx.execute(
            "UPDATE webhook_deliveries SET status = %s, updated_at = %s, owner = NULL, lease_until = NULL"
            " WHERE id = %s AND status = %s RETURNING id",
            [PENDING, now, row[0], REDRIVE],
        )
        if taken:
            claimed.append(msgspec.structs.replace(_delivery(row), status=PENDING))
    return claimed


def _delivery(row: Sequence[object]) -> Delivery:
    ident, webhook, key, event, notification, body, status, attempts, created, updated = row
    return Delivery(
        id=str(ident),
        webhook_id=UUID(hex=str(webhook)),
        ordering_key=str(key),
        event=str(event),
        notification_id=int(str(notification)),
        body=str(body),
        status=str(status),
        attempts=_attempts.decode(str(attempts)),
        created_at=float(str(created)),
        updated_at=float(str(updated)),
    )
