"""Fold account events into a balance per account and a ledger line per credit or charge."""

from __future__ import annotations

from collections.abc import Sequence

from modelyard.domain.accounts.aggregate import AccountOpened, CreditsAdded, CreditsCharged, CreditsExhausted
from modelyard.projections.base import Tx
from modelyard.projections.common import account_ref, event_ref, iso

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS balances (
        account_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        plan TEXT NOT NULL,
        balance BIGINT NOT NULL,
        credited BIGINT NOT NULL,
        charged BIGINT NOT NULL,
        exhausted INTEGER NOT NULL,
        opened_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS ledger (
        position BIGINT PRIMARY KEY,
        account_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        amount BIGINT NOT NULL,
        balance_after BIGINT NOT NULL,
        deployment_id TEXT,
        minute TEXT,
        source_event TEXT,
        at TEXT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS ledger_account ON ledger (account_id, position)",
)


class BalancesProjection:
    """A balance per account, and the ledger that explains it."""

    name = "balances"
    schema: Sequence[str] = SCHEMA
    tables: Sequence[str] = ("balances", "ledger")

    def apply(self, tx: Tx, event: object, position: int) -> None:
        """Fold one account event; other events pass by."""
        match event:
            case AccountOpened():
                tx.execute(
                    "INSERT INTO balances (account_id, name, plan, balance, credited, charged, exhausted,"
                    " opened_at, updated_at) VALUES (%s, %s, %s, 0, 0, 0, 0, %s, %s)",
                    [
                        account_ref(event.originator_id),
                        event.name,
                        event.plan,
                        iso(event.timestamp),
                        iso(event.timestamp),
                    ],
                )
            case CreditsAdded():
                self._move(tx, event.amount, "credited", position, event)
            case CreditsCharged():
                self._move(tx, -event.amount, "charged", position, event)
            case CreditsExhausted():
                tx.execute(
                    "UPDATE balances SET exhausted = 1, updated_at = %s WHERE account_id = %s",
                    [iso(event.timestamp), account_ref(event.originator_id)],
                )

    def _move(
        self,
        tx: Tx,
        delta: int,
        column: str,
        position: int,
        event: CreditsAdded | CreditsCharged,
    ) -> None:
        ref = account_ref(event.originator_id)
        rows = tx.execute(
            f"UPDATE balances SET balance = balance + %s, {column} = {column} + %s, updated_at = %s"  # noqa: S608
            " WHERE account_id = %s RETURNING balance",
            [delta, abs(delta), iso(event.timestamp), ref],
        )
        deployment = minute = source = None
        if isinstance(event, CreditsCharged):
            deployment = str(event.deployment_id)
            minute = iso(event.minute)
            source = event_ref(event.deployment_id, event.metered_version)
        tx.execute(
            "INSERT INTO ledger (position, account_id, event_id, kind, amount, balance_after, deployment_id,"
            " minute, source_event, at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                position,
                ref,
                event_ref(event.originator_id, event.originator_version),
                "credit" if delta >= 0 else "charge",
                abs(delta),
                int(rows[0][0]),
                deployment,
                minute,
                source,
                iso(event.timestamp),
            ],
        )
