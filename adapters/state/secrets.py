"""Instance keys awaiting their one showing.

The agent learns its ``auxk_`` key by polling the instance until it runs (the first
document's step 2). The secret therefore waits here, outside the event store (events
hold only its hash), and is deleted the first time the key is used for inference: from
then on the instance shows only the key's hint. Rows name the deployment by ``uuid.hex``,
as the views do.
"""

from __future__ import annotations

from uuid import UUID

from modelyard.projections.base import Tx

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS instance_secrets (
        deployment_id TEXT PRIMARY KEY,
        secret TEXT NOT NULL
    )
    """,
)


def keep(tx: Tx, deployment_id: UUID, secret: str) -> None:
    """Hold a new instance key's secret until it is first used."""
    tx.execute(
        "INSERT INTO instance_secrets (deployment_id, secret) VALUES (%s, %s)", [deployment_id.hex, secret]
    )


def peek(tx: Tx, deployment_id: UUID) -> str | None:
    """The secret, if it has not been used yet."""
    rows = tx.execute("SELECT secret FROM instance_secrets WHERE deployment_id = %s", [deployment_id.hex])
    return str(rows[0][0]) if rows else None


def forget(tx: Tx, deployment_id: UUID) -> None:
    """The key was used: never show the secret again."""
    tx.execute("DELETE FROM instance_secrets WHERE deployment_id = %s", [deployment_id.hex])


def stored_ids(tx: Tx) -> set[str]:
    """Every deployment id the store holds a secret for, as stored (for consistency checks)."""
    return {str(row[0]) for row in tx.execute("SELECT deployment_id FROM instance_secrets")}
