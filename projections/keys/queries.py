"""Read the keys view: who a secret's hash authenticates, and an instance key's hint."""

from __future__ import annotations

from uuid import UUID

import msgspec

from modelyard.projections.base import Tx


class KeyPrincipal(msgspec.Struct, frozen=True, kw_only=True):
    """A live key as authentication needs it: its account, kind, and deployments it reaches.

    ``deployment_id`` (an instance key's own deployment) and ``grants`` (a scoped key's)
    hold ``uuid.hex``, the form every view stores a deployment in.
    """

    key_id: str
    account_id: str
    kind: str
    deployment_id: str | None
    grants: frozenset[str]
    # The account's plan: its per-minute limits on the second dialect's routes.
    plan: str = "free"


def principal_by_secret_hash(tx: Tx, secret_hash: str) -> KeyPrincipal | None:
    """The unrevoked key with this hash, with its grants; None for an unknown or revoked one."""
    rows = tx.execute(
        "SELECT key_id, account_id, kind, deployment_uuid FROM api_keys"
        " WHERE secret_hash = %s AND revoked = 0",
        [secret_hash],
    )
    if not rows:
        return None
    key_id, account_id, kind, deployment = rows[0]
    grants = tx.execute("SELECT deployment_uuid FROM key_grants WHERE key_id = %s", [key_id])
    plan = tx.execute("SELECT plan FROM balances WHERE account_id = %s", [account_id])
    return KeyPrincipal(
        key_id=str(key_id),
        account_id=str(account_id),
        kind=str(kind),
        deployment_id=None if deployment is None else str(deployment),
        grants=frozenset(str(g[0]) for g in grants),
        plan=str(plan[0][0]) if plan else "free",
    )


def instance_key_hint(tx: Tx, deployment_id: UUID) -> str | None:
    """The printable hint of a deployment's own key, if one was issued."""
    rows = tx.execute("SELECT display FROM api_keys WHERE deployment_uuid = %s", [deployment_id.hex])
    return str(rows[0][0]) if rows else None


def stored_ids(tx: Tx) -> dict[str, set[str]]:
    """Every deployment id the keys and grants hold, as stored (for consistency checks)."""
    keys = tx.execute("SELECT deployment_uuid FROM api_keys WHERE deployment_uuid IS NOT NULL")
    grants = tx.execute("SELECT deployment_uuid FROM key_grants")
    return {"api_keys": {str(r[0]) for r in keys}, "key_grants": {str(r[0]) for r in grants}}
