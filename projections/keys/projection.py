"""Fold key events into rows looked up by secret hash."""

from __future__ import annotations

from collections.abc import Sequence

from modelyard.domain.keys.aggregate import AccessGranted, AccessRevoked, KeyIssued, KeyRevoked
from modelyard.domain.shared import ids
from modelyard.projections.base import OneByOne, Tx
from modelyard.projections.common import account_ref, iso

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS api_keys (
        key_id TEXT PRIMARY KEY,
        secret_hash TEXT NOT NULL UNIQUE,
        account_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        deployment_uuid TEXT,
        display TEXT NOT NULL,
        revoked INTEGER NOT NULL,
        created_at TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS key_grants (
        key_id TEXT NOT NULL,
        deployment_uuid TEXT NOT NULL,
        role TEXT NOT NULL,
        PRIMARY KEY (key_id, deployment_uuid)
    )
    """,
)


class KeysProjection(OneByOne):
    """Keys by hash (never the secret), and which deployments scoped keys reach."""

    name = "keys"
    schema: Sequence[str] = SCHEMA
    tables: Sequence[str] = ("api_keys", "key_grants")

    def apply(self, tx: Tx, event: object, position: int) -> None:
        """Fold one key event; other events pass by."""
        match event:
            case KeyIssued():
                tx.execute(
                    "INSERT INTO api_keys (key_id, secret_hash, account_id, kind, deployment_uuid, display,"
                    " revoked, created_at) VALUES (%s, %s, %s, %s, %s, %s, 0, %s)",
                    [
                        ids.public_id(ids.KEY, event.originator_id),
                        event.secret_hash,
                        account_ref(event.account_id),
                        event.kind,
                        event.deployment_id.hex if event.deployment_id else None,
                        event.display,
                        iso(event.timestamp),
                    ],
                )
            case KeyRevoked():
                tx.execute(
                    "UPDATE api_keys SET revoked = 1 WHERE key_id = %s",
                    [ids.public_id(ids.KEY, event.originator_id)],
                )
            case AccessGranted():
                tx.execute(
                    "INSERT INTO key_grants (key_id, deployment_uuid, role) VALUES (%s, %s, %s)"
                    " ON CONFLICT (key_id, deployment_uuid) DO UPDATE SET role = EXCLUDED.role",
                    [ids.public_id(ids.KEY, event.originator_id), event.deployment_id.hex, event.role],
                )
            case AccessRevoked():
                tx.execute(
                    "DELETE FROM key_grants WHERE key_id = %s AND deployment_uuid = %s",
                    [ids.public_id(ids.KEY, event.originator_id), event.deployment_id.hex],
                )
