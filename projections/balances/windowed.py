"""Read the ledger over a window of minutes: what each deployment was charged since then."""

from __future__ import annotations

from uuid import UUID

from modelyard.projections.base import Tx


def charges_since(tx: Tx, account_id: str, since_minute: str) -> dict[UUID, int]:
    """The account's charges per deployment for minutes from ``since_minute`` (``YYYY-MM-DDTHH:MM``) on."""
    rows = tx.execute(
        "SELECT deployment_id, SUM(amount) FROM ledger"
        " WHERE account_id = %s AND kind = 'charge' AND minute >= %s GROUP BY deployment_id",
        [account_id, since_minute],
    )
    return {UUID(hex=str(dep)): int(total) for dep, total in rows if dep is not None}
