"""Fold account events into a balance per account, a ledger line per credit or charge, and
the credit each live deployment holds (``reservations``)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from modelyard.domain.accounts.aggregate import (
    AccountOpened,
    CreditReleased,
    CreditReserved,
    CreditsAdded,
    CreditsCharged,
    CreditsExhausted,
)
from modelyard.projections.base import Positioned, Tx
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
    """
    CREATE TABLE IF NOT EXISTS reservations (
        account_id TEXT NOT NULL,
        deployment_id TEXT NOT NULL,
        amount BIGINT NOT NULL,
        replicas INTEGER NOT NULL,
        PRIMARY KEY (account_id, deployment_id)
    )
    """,
)


class _Balance(msgspec.Struct, kw_only=True):
    """One ``balances`` row while a batch is folded (field order is the column order)."""

    name: str
    plan: str
    balance: int
    credited: int
    charged: int
    exhausted: int
    opened_at: str
    updated_at: str


COLUMNS = _Balance.__struct_fields__
LEDGER_COLUMNS = (
    "position", "account_id", "event_id", "kind", "amount", "balance_after", "deployment_id", "minute",
    "source_event", "at",
)  # fmt: skip
AccountEvent = AccountOpened | CreditsAdded | CreditsCharged | CreditsExhausted
Held = CreditReserved | CreditReleased


class BalancesProjection:
    """A balance per account, and the ledger that explains it.

    A batch costs a handful of statements however many events it holds: the touched
    accounts' rows are read once, the events folded in order in memory, then the ledger
    lines appended in bulk (COPY on PostgreSQL) and the new balances upserted with one
    pipelined ``executemany``. That is what lets the finance replay rebuild a long history
    quickly.
    """

    name = "balances"
    schema: Sequence[str] = SCHEMA
    tables: Sequence[str] = ("balances", "ledger", "reservations")

    def apply(self, tx: Tx, event: object, position: int) -> None:
        """Fold one account event; other events pass by."""
        self.apply_batch(tx, [(event, position)])

    def apply_batch(self, tx: Tx, events: Sequence[Positioned]) -> None:
        """See :class:`~modelyard.projections.base.Projection`."""
        _hold(tx, [e for e, _ in events if isinstance(e, Held)])
        mine = [(e, p) for e, p in events if isinstance(e, AccountEvent)]
        if not mine:
            return
        accounts = _read(tx, {account_ref(e.originator_id) for e, _ in mine})
        ledger = [line for e, p in mine if (line := _fold(accounts, e, p)) is not None]
        if ledger:
            tx.insert_rows("ledger", LEDGER_COLUMNS, ledger)
        tx.executemany(
            f"INSERT INTO balances (account_id, {', '.join(COLUMNS)})"  # noqa: S608 - column names are code
            f" VALUES (%s, {', '.join('%s' for _ in COLUMNS)}) ON CONFLICT (account_id) DO UPDATE SET "
            + ", ".join(f"{column} = EXCLUDED.{column}" for column in COLUMNS),
            [[ref, *msgspec.structs.astuple(row)] for ref, row in accounts.items()],
        )


def _hold(tx: Tx, events: Sequence[Held]) -> None:
    """Apply holds and releases in order: the last word on each deployment stands."""
    last: dict[tuple[str, str], Held] = {}
    for event in events:
        last[(account_ref(event.originator_id), event.deployment_id.hex)] = event
    for (account, deployment), event in last.items():
        key = [account, deployment]
        tx.execute("DELETE FROM reservations WHERE account_id = %s AND deployment_id = %s", key)
        if isinstance(event, CreditReserved):
            tx.execute(
                "INSERT INTO reservations (account_id, deployment_id, amount, replicas)"
                " VALUES (%s, %s, %s, %s)",
                [*key, event.amount, event.replicas],
            )


def _read(tx: Tx, refs: set[str]) -> dict[str, _Balance]:
    ordered = sorted(refs)
    rows = tx.execute(
        f"SELECT account_id, {', '.join(COLUMNS)} FROM balances"  # noqa: S608 - column names are code
        f" WHERE account_id IN ({', '.join('%s' for _ in ordered)})",
        ordered,
    )
    return {str(row[0]): _Balance(**dict(zip(COLUMNS, row[1:], strict=True))) for row in rows}


def _fold(accounts: dict[str, _Balance], event: AccountEvent, position: int) -> list[object] | None:
    """Apply one event to the in-memory rows; return the ledger line it writes, if any."""
    ref, at = account_ref(event.originator_id), iso(event.timestamp)
    if isinstance(event, AccountOpened):
        accounts[ref] = _Balance(
            name=event.name,
            plan=event.plan,
            balance=0,
            credited=0,
            charged=0,
            exhausted=0,
            opened_at=at,
            updated_at=at,
        )
        return None
    row = accounts.get(ref)
    if row is None:
        raise LookupError(f"{type(event).__name__} for {ref}, which no AccountOpened created")
    row.updated_at = at
    if isinstance(event, CreditsExhausted):
        row.exhausted = 1
        return None
    deployment = minute = source = None
    if isinstance(event, CreditsAdded):
        row.balance += event.amount
        row.credited += event.amount
        # A top-up that lifts the balance above zero ends the exhaustion, as in the aggregate;
        # otherwise the reconciler would stop the account's next deployment too.
        row.exhausted = int(bool(row.exhausted) and row.balance <= 0)
    else:
        row.balance -= event.amount
        row.charged += event.amount
        deployment = event.deployment_id.hex
        minute = iso(event.minute)
        source = event_ref(event.deployment_id, event.metered_version)
    return [
        position,
        ref,
        event_ref(event.originator_id, event.originator_version),
        "credit" if isinstance(event, CreditsAdded) else "charge",
        event.amount,
        row.balance,
        deployment,
        minute,
        source,
        at,
    ]
