"""Reads of the low-balance view."""

from __future__ import annotations

from uuid import UUID

from modelyard.projections.base import Tx

# Deployments that can still be moved or moved back: not ended, not failed.
_GUARDED = ("provisioning", "running", "scaling", "degraded", "scaled_to_zero", "waking")


def guarded_deployments(tx: Tx) -> list[UUID]:
    """Every deployment not yet ended whose owner chose what it allows (``keep`` too: it may be held)."""
    rows = tx.execute(
        "SELECT a.deployment_id FROM low_balance_allowances a JOIN deployments d ON d.id = a.deployment_id"
        " WHERE d.state IN (%s, %s, %s, %s, %s, %s) ORDER BY a.deployment_id",
        list(_GUARDED),
    )
    return [UUID(hex=str(row[0])) for row in rows]


def allowance_of(tx: Tx, deployment_id: UUID) -> str:
    """What the deployment allows when its account runs low (``keep`` unless chosen)."""
    rows = tx.execute(
        "SELECT on_low_balance FROM low_balance_allowances WHERE deployment_id = %s", [deployment_id.hex]
    )
    return str(rows[0][0]) if rows else "keep"
