"""Operator commands acting on the configured store: accounts, credits, the finance audit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import click

from modelyard.adapters.eventstore.env import open_yard
from modelyard.adapters.keygen import MANAGEMENT_PREFIX, new_secret
from modelyard.adapters.views.db import open_views
from modelyard.domain.application import Yard
from modelyard.domain.keys.aggregate import KeyKind
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import DomainError
from modelyard.domain.shared.money import format_usd, parse_usd
from modelyard.projections.balances.queries import ledger_of_account
from modelyard.settings import load_settings
from modelyard.workers.audit import replay
from modelyard.workers.projection_runner import ProjectionRunner
from modelyard.workers.views import all_projections, views_source


@contextmanager
def _yard() -> Iterator[Yard]:
    settings = load_settings()
    yard = open_yard(settings)
    try:
        _catch_up(yard)
        yield yard
    except DomainError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from exc
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        _catch_up(yard)
        yard.close()


def _catch_up(yard: Yard) -> None:
    """Embedded mode has no worker running beside the CLI: bring the views up to date here."""
    settings = load_settings()
    if settings.uses_kafka:
        return
    views = open_views(settings)
    try:
        ProjectionRunner(views, views_source(settings, yard, views), all_projections()).run_until_idle()
    finally:
        views.close()


def _now() -> datetime:
    return datetime.now(UTC)


@click.group()
def accounts() -> None:
    """Accounts and their management keys."""


@accounts.command("create")
@click.option("--name", required=True, help="Who the account is for.")
@click.option("--credits", "usd", default=None, help="Prepaid USD to start with, e.g. 25.00.")
@click.option("--plan", default="free", show_default=True, help="free, basic, professional, enterprise.")
def create_account(name: str, usd: str | None, plan: str) -> None:
    """Open an account; prints its id and a management key, shown this once."""
    with _yard() as yard:
        micros = parse_usd(usd) if usd is not None else None
        now = _now()
        account = yard.open_account(name=name, plan=plan, at=now)
        if micros is not None:
            yard.add_credits(account, micros, at=now)
        secret, digest, display = new_secret(MANAGEMENT_PREFIX)
        key_id = yard.issue_key(
            account_id=account, kind=KeyKind.MANAGEMENT, secret_hash=digest, display=display, at=now
        )
    click.echo(f"account_id: {ids.public_id(ids.ACCOUNT, account)}")
    click.echo(f"key_id: {ids.public_id(ids.KEY, key_id)}")
    click.echo(f"api_key: {secret}")
    click.echo("The key is shown once; store it now.", err=True)


@click.group()
def credits() -> None:
    """Prepaid credits."""


@credits.command("add", context_settings={"ignore_unknown_options": True})
@click.argument("account_id")
@click.argument("usd")
def add_credits(account_id: str, usd: str) -> None:
    """Add USD credits to an account."""
    with _yard() as yard:
        account = ids.parse_id(account_id, ids.ACCOUNT)
        yard.add_credits(account, parse_usd(usd), at=_now())
        balance = yard.get_account(account).balance
    click.echo(f"{account_id} balance: {format_usd(balance)} USD")


@click.group()
def keys() -> None:
    """API keys."""


@keys.command("revoke")
@click.argument("key_id")
def revoke_key(key_id: str) -> None:
    """Revoke a key; every API process refuses it within seconds."""
    with _yard() as yard:
        yard.revoke_key(ids.parse_id(key_id, ids.KEY), at=_now())
    click.echo(f"{key_id} revoked")


@click.group()
def audit() -> None:
    """Finance: replay history, list charges."""


@audit.command("replay")
@click.option("--source", type=click.Choice(["store", "kafka"]), default="store", show_default=True)
def replay_command(source: str) -> None:
    """Rebuild balances and ledger from the first event and compare with the live views."""
    settings = load_settings()
    with _yard() as yard:
        views = open_views(settings)
        try:
            report = replay(settings, yard, views, source=source)
        finally:
            views.close()
    if report.identical:
        click.echo(
            f"identical: {report.events} events from {report.source} rebuilt "
            f"{report.accounts} accounts' balances and ledger to the micro-dollar"
        )
        return
    for line in report.differences:
        click.echo(line)
    raise click.ClickException(f"{len(report.differences)} rows differ")


@audit.command("ledger")
@click.argument("account_id")
def ledger_command(account_id: str) -> None:
    """List an account's credits and charges with the events they came from."""
    settings = load_settings()
    with _yard():
        pass  # opening the store brings the embedded views up to date
    views = open_views(settings)
    try:
        with views.transaction() as tx:
            lines = ledger_of_account(tx, account_id)
    finally:
        views.close()
    if not lines:
        raise click.ClickException(f"no ledger lines for {account_id}")
    click.echo("position  at  kind  amount_usd  balance_usd  event  [metered event, minute]")
    for line in lines:
        sign = "-" if line.kind == "charge" else "+"
        extra = f"  [{line.source_event}, {line.minute}]" if line.source_event else ""
        money = f"{sign}{format_usd(line.amount)}  {format_usd(line.balance_after)}"
        click.echo(f"{line.position}  {line.at}  {line.kind}  {money}  {line.event_id}{extra}")
