"""Idempotency records: one row per (account, ``Idempotency-Key``), the first answer kept.

A record is *claimed* (pending) while its command runs and *completed* with its answer.
Both expire:

- a pending claim older than ``ABANDONED_AFTER_S`` is abandoned — the process running its
  command died (a command takes a second or two; several API processes share PostgreSQL,
  so "this process just started" cannot say whose claims are dead, but age can) — and the
  next request with the same key and the same request re-claims it, atomically;
- every record is kept ``RETENTION_S`` (24 h, as Stripe keeps keys) from its claim, then
  pruned (``prune``, by the state janitor) or, if met earlier, treated as absent.

A claim carries an id (``claim_id``) that a re-claim keeps: the command is handed it so
that what a dead first attempt may already have created can be found again (provisioning
uses it as the new deployment's id). Answers stored here never hold a secret: the caller
stores them without one (``api.instances.actions``).
"""

from __future__ import annotations

from uuid import UUID, uuid4

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
        claim_id TEXT,
        claimed_at DOUBLE PRECISION,
        PRIMARY KEY (account_id, key)
    )
    """,
)
#: Columns added after the table first shipped, with their types (``open_state`` adds them).
ADDED_COLUMNS = {"claim_id": "TEXT", "claimed_at": "DOUBLE PRECISION"}
#: The status of a record whose command is still running.
PENDING = 0
#: A pending claim older than this (seconds) is abandoned and may be claimed again.
ABANDONED_AFTER_S = 60.0
#: How long (seconds) a record is kept from its claim: a retry within it gets the first answer.
RETENTION_S = 24 * 3600.0


class Recorded(msgspec.Struct, frozen=True, kw_only=True):
    """What the first request with a key left: its request's hash, and its answer once done."""

    request_hash: str
    status: int
    body: str


def claim(tx: Tx, account_id: str, key: str, request_hash: str, *, at: str, now: float) -> UUID | None:
    """Claim the key for a request; the claim's id, or None if the key is held.

    Held means completed within ``RETENTION_S``, or pending within ``ABANDONED_AFTER_S``, or
    pending with another request. An abandoned pending claim for the same request is
    taken over and keeps its id; an expired record is replaced by a fresh claim.
    """
    tx.execute(
        "DELETE FROM idempotency WHERE account_id = %s AND key = %s AND claimed_at < %s",
        [account_id, key, now - RETENTION_S],
    )
    rows = tx.execute(
        "INSERT INTO idempotency"
        " (account_id, key, request_hash, status, body, created_at, claim_id, claimed_at)"
        " VALUES (%s, %s, %s, %s, '', %s, %s, %s)"
        " ON CONFLICT (account_id, key) DO UPDATE SET claimed_at = EXCLUDED.claimed_at,"
        " claim_id = COALESCE(idempotency.claim_id, EXCLUDED.claim_id)"
        " WHERE idempotency.status = %s AND idempotency.request_hash = EXCLUDED.request_hash"
        " AND (idempotency.claimed_at IS NULL OR idempotency.claimed_at < %s)"
        " RETURNING claim_id",
        [account_id, key, request_hash, PENDING, at, uuid4().hex, now, PENDING, now - ABANDONED_AFTER_S],
    )
    return UUID(hex=str(rows[0][0])) if rows else None


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


def complete(tx: Tx, account_id: str, key: str, claim_id: UUID, *, status: int, body: str) -> None:
    """Store the command's answer under the key (if the claim is still this one's)."""
    tx.execute(
        "UPDATE idempotency SET status = %s, body = %s WHERE account_id = %s AND key = %s AND claim_id = %s",
        [status, body, account_id, key, claim_id.hex],
    )


def release(tx: Tx, account_id: str, key: str, claim_id: UUID) -> None:
    """Forget a claim whose command failed, so a retry really retries (never another's claim)."""
    tx.execute(
        "DELETE FROM idempotency WHERE account_id = %s AND key = %s AND claim_id = %s AND status = %s",
        [account_id, key, claim_id.hex, PENDING],
    )


def prune(tx: Tx, *, now: float) -> int:
    """Delete every record past ``RETENTION_S`` (pending ones too: abandoned, never retried)."""
    return len(tx.execute("DELETE FROM idempotency WHERE claimed_at < %s RETURNING key", [now - RETENTION_S]))


def adopt_old_records(tx: Tx, *, now: float) -> None:
    """Records from before claims had times get one (so they expire in turn), and lose any key.

    Answers were once stored whole, an instance's ``api_key`` with them: that key is
    blanked (a replay shows it again only if it is still unseen, from the secrets store).
    """
    rows = tx.execute("SELECT account_id, key, body FROM idempotency WHERE claimed_at IS NULL")
    for account_id, key, body in rows:
        tx.execute(
            "UPDATE idempotency SET claimed_at = %s, body = %s WHERE account_id = %s AND key = %s",
            [now, _without_api_key(str(body)), account_id, key],
        )


def _without_api_key(body: str) -> str:
    try:
        answer = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body
    data = answer.get("data") if isinstance(answer, dict) else None
    instance = data.get("instance") if isinstance(data, dict) else None
    if not isinstance(instance, dict) or instance.get("api_key") is None:
        return body
    instance["api_key"] = None
    return msgspec.json.encode(answer).decode()
