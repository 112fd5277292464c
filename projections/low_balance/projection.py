"""What each deployment allows when its account runs low, for the balance guard and the API.

One row per deployment whose owner ever chose (``LowBalanceAllowanceSet``); deployments by
``uuid.hex``, accounts by their public id, as the other views name them.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelyard.domain.deployments.events import DeploymentRequested, LowBalanceAllowanceSet
from modelyard.projections.base import OneByOne, Tx
from modelyard.projections.common import account_ref

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS low_balance_allowances (
        deployment_id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        on_low_balance TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS low_balance_owners (
        deployment_id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL
    )
    """,
)


class LowBalanceProjection(OneByOne):
    """Each deployment's choice; a deployment's account is kept from its request."""

    name = "low_balance"
    schema: Sequence[str] = SCHEMA
    tables: Sequence[str] = ("low_balance_allowances", "low_balance_owners")

    def apply(self, tx: Tx, event: object, position: int) -> None:
        """Fold one event; others pass by."""
        match event:
            case DeploymentRequested():
                tx.execute(
                    "INSERT INTO low_balance_owners (deployment_id, account_id) VALUES (%s, %s)"
                    " ON CONFLICT (deployment_id) DO NOTHING",
                    [event.originator_id.hex, account_ref(event.account_id)],
                )
            case LowBalanceAllowanceSet():
                owner = tx.execute(
                    "SELECT account_id FROM low_balance_owners WHERE deployment_id = %s",
                    [event.originator_id.hex],
                )
                tx.execute(
                    "INSERT INTO low_balance_allowances (deployment_id, account_id, on_low_balance)"
                    " VALUES (%s, %s, %s) ON CONFLICT (deployment_id)"
                    " DO UPDATE SET on_low_balance = EXCLUDED.on_low_balance",
                    [event.originator_id.hex, str(owner[0][0]) if owner else "", str(event.on_low_balance)],
                )
