"""Instance keys awaiting their one showing.

The agent learns its ``auxk_`` key by polling the instance until it runs (the first
document's step 2). The secret therefore waits here, outside the event store (events
hold only its hash), and is deleted the first time the key is used for inference: from
then on the instance shows only the key's hint. It is also deleted when the deployment
ends, however it ends (``workers.janitor``). Rows name the deployment by ``uuid.hex``, as
the views do. On SQLite a deleted row is overwritten in the file at once (the state store
is opened ``forgetful``).
"""

from __future__ import annotations

import time
from uuid import UUID

import msgspec

from modelyard.projections.base import Tx

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS instance_secrets (
        deployment_id TEXT PRIMARY KEY,
        secret TEXT NOT NULL,
        kept_at DOUBLE PRECISION
    )
    """,
)
#: Columns added after the table first shipped, with their types (``open_state`` adds them).
ADDED_COLUMNS = {"kept_at": "DOUBLE PRECISION"}


class Held(msgspec.Struct, frozen=True, kw_only=True):
    """A secret awaiting its showing: whose, and since when (epoch seconds; None if older)."""

    deployment_id: UUID
    kept_at: float | None


def keep(tx: Tx, deployment_id: UUID, secret: str) -> None:
    """Hold a new instance key's secret until it is first used."""
    tx.execute(
        "INSERT INTO instance_secrets (deployment_id, secret, kept_at) VALUES (%s, %s, %s)",
        [deployment_id.hex, secret, time.time()],
    )


def hold(tx: Tx, deployment_id: UUID, candidate: str) -> str:
    """The secret held for the deployment: ``candidate`` if none was, else the one held first.

    A provision retried after its first attempt died may find the first attempt's secret
    here (its deployment perhaps already recorded with that secret's hash): both must use
    the same one, so the first kept wins.
    """
    tx.execute(
        "INSERT INTO instance_secrets (deployment_id, secret, kept_at) VALUES (%s, %s, %s)"
        " ON CONFLICT (deployment_id) DO NOTHING",
        [deployment_id.hex, candidate, time.time()],
    )
    held = peek(tx, deployment_id)
    assert held is not None
    return held


def peek(tx: Tx, deployment_id: UUID) -> str | None:
    """The secret, if it has not been used yet."""
    rows = tx.execute("SELECT secret FROM instance_secrets WHERE deployment_id = %s", [deployment_id.hex])
    return str(rows[0][0]) if rows else None


def forget(tx: Tx, deployment_id: UUID) -> None:
    """The key was used, or its deployment ended: never show the secret again."""
    tx.execute("DELETE FROM instance_secrets WHERE deployment_id = %s", [deployment_id.hex])


def stored_ids(tx: Tx) -> set[str]:
    """Every deployment id the store holds a secret for, as stored (for consistency checks)."""
    return {str(row[0]) for row in tx.execute("SELECT deployment_id FROM instance_secrets")}


def held(tx: Tx) -> list[Held]:
    """Every secret still awaiting its showing: whose, and since when."""
    rows = tx.execute("SELECT deployment_id, kept_at FROM instance_secrets")
    return [Held(deployment_id=UUID(hex=str(d)), kept_at=None if k is None else float(k)) for d, k in rows]
