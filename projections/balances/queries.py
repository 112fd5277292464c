"""Read the balances view and its ledger: what an account holds, and what explains it."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec

from modelyard.projections.base import Tx

#: The tables the finance replay compares row for row.
AUDITED = ("balances", "ledger", "reservations")


class Balance(msgspec.Struct, frozen=True, kw_only=True):
    """An account's prepaid balance and how it came to be, in micro-dollars."""

    plan: str
    balance: int
    credited: int
    charged: int
    # Held by live deployments (one minute each at their price); available is the rest.
    reserved: int = 0

    @property
    def available(self) -> int:
        """What new or bigger deployments may hold: the balance less every hold."""
        return self.balance - self.reserved


class DeploymentCharges(msgspec.Struct, frozen=True, kw_only=True):
    """What one deployment of an account was charged: minutes metered and their sum."""

    deployment_id: UUID
    minutes: int
    amount: int


class LedgerLine(msgspec.Struct, frozen=True, kw_only=True):
    """One credit or charge, with the event it came from (and, for a charge, the metered one)."""

    position: int
    at: str
    kind: str
    amount: int
    balance_after: int
    event_id: str
    source_event: str | None
    minute: str | None


def balance_of(tx: Tx, account_id: str) -> Balance | None:
    """The account's balance row, or None before its ``AccountOpened`` is in the view."""
    rows = tx.execute(
        "SELECT plan, balance, credited, charged,"
        " (SELECT COALESCE(SUM(amount), 0) FROM reservations r WHERE r.account_id = b.account_id)"
        " FROM balances b WHERE account_id = %s",
        [account_id],
    )
    if not rows:
        return None
    plan, balance, credited, charged, reserved = rows[0]
    return Balance(
        plan=str(plan),
        balance=int(balance),
        credited=int(credited),
        charged=int(charged),
        reserved=int(reserved),
    )


def charges_by_deployment(tx: Tx, account_id: str) -> list[DeploymentCharges]:
    """The account's charges summed per deployment, in deployment-id order."""
    rows = tx.execute(
        "SELECT deployment_id, COUNT(*), SUM(amount) FROM ledger"
        " WHERE account_id = %s AND kind = 'charge' GROUP BY deployment_id ORDER BY deployment_id",
        [account_id],
    )
    return [
        DeploymentCharges(deployment_id=UUID(hex=str(dep)), minutes=int(count), amount=int(total))
        for dep, count, total in rows
    ]


def ledger_of_account(tx: Tx, account_id: str) -> list[LedgerLine]:
    """Every ledger line of the account, in the order the events were stored."""
    rows = tx.execute(
        "SELECT position, at, kind, amount, balance_after, event_id, source_event, minute"
        " FROM ledger WHERE account_id = %s ORDER BY position",
        [account_id],
    )
    return [
        LedgerLine(
            position=int(position),
            at=str(at),
            kind=str(kind),
            amount=int(amount),
            balance_after=int(balance),
            event_id=str(event_id),
            source_event=None if source is None else str(source),
            minute=None if minute is None else str(minute),
        )
        for position, at, kind, amount, balance, event_id, source, minute in rows
    ]


def exhausted_accounts(tx: Tx) -> set[str]:
    """Accounts whose credits ran out (their deployments are to be stopped)."""
    return {str(row[0]) for row in tx.execute("SELECT account_id FROM balances WHERE exhausted = 1")}


def audited_rows(tx: Tx) -> dict[str, set[tuple[Any, ...]]]:
    """Every row of the balances and ledger tables, for the finance replay's comparison."""
    return {table: set(tx.execute(f"SELECT * FROM {table}")) for table in AUDITED}  # noqa: S608 - names are code


def charged_deployments(tx: Tx) -> set[str]:
    """Every deployment id the ledger holds, as stored (for consistency checks)."""
    rows = tx.execute("SELECT DISTINCT deployment_id FROM ledger WHERE deployment_id IS NOT NULL")
    return {str(row[0]) for row in rows}


class ExportRow(msgspec.Struct, frozen=True, kw_only=True):
    """One ledger line as the export writes it: whose it is, and the events it came from."""

    position: int
    account_id: str
    kind: str
    amount: int
    balance_after: int
    deployment_id: str | None
    minute: str | None
    at: str
    event_id: str
    source_event: str | None


def export_rows(tx: Tx, account_id: str | None = None) -> list[ExportRow]:
    """The ledger of one account (or of every account), in the order the events were stored."""
    select = (
        "SELECT position, account_id, kind, amount, balance_after, deployment_id, minute, at,"
        " event_id, source_event FROM ledger"
    )
    if account_id is None:
        rows = tx.execute(select + " ORDER BY position", [])
    else:
        rows = tx.execute(select + " WHERE account_id = %s ORDER BY position", [account_id])
    return [
        ExportRow(
            position=int(position),
            account_id=str(account),
            kind=str(kind),
            amount=int(amount),
            balance_after=int(balance),
            deployment_id=None if deployment is None else str(deployment),
            minute=None if minute is None else str(minute),
            at=str(at),
            event_id=str(event_id),
            source_event=None if source is None else str(source),
        )
        for position, account, kind, amount, balance, deployment, minute, at, event_id, source in rows
    ]


def charges_between(tx: Tx, deployment_id: UUID, since: str, until: str) -> tuple[int, int]:
    """(minutes, micro-dollars) charged for the deployment's minutes in ``[since, until)``."""
    rows = tx.execute(
        "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM ledger"
        " WHERE deployment_id = %s AND kind = 'charge' AND minute >= %s AND minute < %s",
        [deployment_id.hex, since, until],
    )
    return int(rows[0][0]), int(rows[0][1])
