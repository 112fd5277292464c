"""Idempotency records: one row per (account, ``Idempotency-Key``), the first answer kept."""

from __future__ import annotations

import msgspec

from modelyard.projections.base import Tx

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS idempotency (
        account_id TEXT NOT NULL,
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (account_id, key)
    )
    """,
)
#: The status of a record whose command is still running.
PENDING = 0


class Recorded(msgspec.Struct, frozen=True, kw_only=True):
    """What the first request with a key left: its request's hash, and its answer once done."""

    request_hash: str
    status: int
    body: str


def reserve(tx: Tx, account_id: str, key: str, request_hash: str, at: str) -> bool:
    """Claim the key for a request (status ``PENDING``); False if it was already claimed."""
    reserved = tx.execute(
        "INSERT INTO idempotency (account_id, key, request_hash, status, body, created_at)"
        " VALUES (%s, %s, %s, %s, '', %s) ON CONFLICT (account_id, key) DO NOTHING RETURNING key",
        [account_id, key, request_hash, PENDING, at],
    )
    return bool(reserved)


def recorded(tx: Tx, account_id: str, key: str) -> Recorded | None:
    """The record under the key, or None."""
    rows = tx.execute(
        "SELECT request_hash, status, body FROM idempotency WHERE account_id = %s AND key = %s",
        [account_id, key],
    )
    if not rows:
        return None
    request_hash, status, body = rows[0]
    return Recorded(request_hash=str(request_hash), status=int(status), body=str(body))


def complete(tx: Tx, account_id: str, key: str, status: int, body: str) -> None:
    """Store the command's answer under the key; retries get it from now on."""
    tx.execute(
        "UPDATE idempotency SET status = %s, body = %s WHERE account_id = %s AND key = %s",
        [status, body, account_id, key],
    )


def release(tx: Tx, account_id: str, key: str) -> None:
    """Forget a claim whose command failed, so a retry really retries."""
    tx.execute("DELETE FROM idempotency WHERE account_id = %s AND key = %s", [account_id, key])
