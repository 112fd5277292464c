"""Operator commands acting on the configured store: accounts, credits, the finance audit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TextIO

import click

from modelyard.adapters.keygen import MANAGEMENT_PREFIX, OPERATOR_PREFIX, new_secret
from modelyard.adapters.ledger.export import ExportFormat, MalformedExport, StoreEvents, export_text
from modelyard.adapters.ledger.reconcile import reconcile
from modelyard.adapters.ledger.verify import EventLookup, KafkaLookup, StoreLookup, verify_export
from modelyard.api.idempotency import fingerprint, run_once
from modelyard.cli.compose import Core, opened_core, operating
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.keys.aggregate import KeyKind
from modelyard.domain.keys.service import IssueKey, RevokeKey
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import DomainError
from modelyard.domain.shared.money import format_usd, parse_usd
from modelyard.projections.balances.queries import export_rows, ledger_of_account
from modelyard.settings import Settings, SettingsError, load_settings
from modelyard.workers.audit import replay


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc


@contextmanager
def _operating() -> Iterator[Core]:
    """The composed core for one command; a refusal becomes the command's error line."""
    try:
        with operating(_settings()) as core:
            yield core
    except DomainError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from exc
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


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
    with _operating() as core:
        services = core.services
        micros = parse_usd(usd) if usd is not None else None
        now = _now()
        account = services.accounts.open_account(OpenAccount(name=name, plan=plan, at=now)).id
        if micros is not None:
            services.accounts.add_credits(AddCredits(account_id=account, amount=micros, at=now))
        secret, digest, display = new_secret(MANAGEMENT_PREFIX)
        key = IssueKey(
            account_id=account, kind=KeyKind.MANAGEMENT, secret_hash=digest, display=display, at=now
        )
        key_id = services.keys.issue(key).id
    click.echo(f"account_id: {ids.public_id(ids.ACCOUNT, account)}")
    click.echo(f"key_id: {ids.public_id(ids.KEY, key_id)}")
    click.echo(f"api_key: {secret}")
    click.echo("The key is shown once; store it now.", err=True)


@click.group()
def credits() -> None:
    """Prepaid credits."""


# Whose idempotency keys the operator's own top-ups are kept under (the HTTP route keeps an
# operator key's under its account).
CLI_OPERATOR = "operator-cli"


@credits.command("add", context_settings={"ignore_unknown_options": True})
@click.argument("account_id")
@click.argument("usd")
@click.option(
    "--idempotency-key",
    default=None,
    help="Retrying with the same key credits once (the second run prints the first's result).",
)
def add_credits(account_id: str, usd: str, idempotency_key: str | None) -> None:
    """Add USD credits to an account."""
    with _operating() as core:
        account = ids.parse_id(account_id, ids.ACCOUNT)
        micros = parse_usd(usd)

        def credit(_: object) -> AddCredits:
            command = AddCredits(account_id=account, amount=micros, at=_now())
            core.services.accounts.add_credits(command)
            return command

        outcome = run_once(
            core.state,
            account_id=CLI_OPERATOR,
            key=idempotency_key,
            request=fingerprint("top_up", account_id, micros),
            status=201,
            command=credit,
        )
        balance = core.services.accounts.get(account).balance
    if outcome.replayed:
        click.echo(f"already credited under idempotency key {idempotency_key!r}; nothing added", err=True)
    click.echo(f"{account_id} balance: {format_usd(balance)} USD")


@click.group()
def keys() -> None:
    """Operator key commands on the store (the account's own keys over HTTP: api-keys)."""


@keys.command("create-operator")
@click.option("--name", default="operator", show_default=True, help="A label for the key.")
def create_operator_key(name: str) -> None:
    """Issue an operator key (tops up any account over HTTP); shown this once."""
    with _operating() as core:
        now = _now()
        account = core.services.accounts.open_account(OpenAccount(name=f"operator: {name}", at=now)).id
        secret, digest, display = new_secret(OPERATOR_PREFIX)
        key = IssueKey(
            account_id=account, kind=KeyKind.OPERATOR, secret_hash=digest, display=display, name=name, at=now
        )
        key_id = core.services.keys.issue(key).id
    click.echo(f"key_id: {ids.public_id(ids.KEY, key_id)}")
    click.echo(f"api_key: {secret}")
    click.echo("The key is shown once; store it now.", err=True)


@keys.command("revoke")
@click.argument("key_id")
def revoke_key(key_id: str) -> None:
    """Revoke a key; every API process refuses it within seconds."""
    with _operating() as core:
        core.services.keys.revoke(RevokeKey(key_id=ids.parse_id(key_id, ids.KEY), at=_now()))
    click.echo(f"{key_id} revoked")


@click.group()
def audit() -> None:
    """Finance: replay history, list charges."""


@audit.command("replay")
@click.option("--source", type=click.Choice(["store", "kafka"]), default="store", show_default=True)
def replay_command(source: str) -> None:
    """Rebuild balances and ledger from the first event and compare with the live views."""
    with _operating() as core:
        report = replay(core.settings, core.store, core.views, source=source)
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
    with _operating() as core, core.views.read() as tx:
        lines = ledger_of_account(tx, account_id)
    if not lines:
        raise click.ClickException(f"no ledger lines for {account_id}")
    click.echo("position  at  kind  amount_usd  balance_usd  event  [metered event, minute]")
    for line in lines:
        sign = "-" if line.kind == "charge" else "+"
        extra = f"  [{line.source_event}, {line.minute}]" if line.source_event else ""
        money = f"{sign}{format_usd(line.amount)}  {format_usd(line.balance_after)}"
        click.echo(f"{line.position}  {line.at}  {line.kind}  {money}  {line.event_id}{extra}")


@audit.command("export")
@click.option("--account", "account_id", default=None, help="One account's ledger (default: every account).")
@click.option("--format", "fmt", type=click.Choice([f.value for f in ExportFormat]), default="jsonl")
@click.option("--output", type=click.File("w"), default="-", show_default=True)
def export_command(account_id: str | None, fmt: str, output: TextIO) -> None:
    """Export the ledger, each line chained to the one before and to the events it came from."""
    with _operating() as core:
        with core.views.read() as tx:
            rows = export_rows(tx, account_id)
        if account_id is not None and not rows:
            raise click.ClickException(f"no ledger lines for {account_id}")
        try:
            for text in export_text(rows, StoreEvents(core.store.recorder), ExportFormat(fmt)):
                output.write(text)
        except LookupError as exc:
            raise click.ClickException(str(exc)) from exc


@audit.command("verify")
@click.argument("export_file", type=click.File("r"))
@click.option(
    "--against",
    type=click.Choice(["chain", "store", "kafka"]),
    default="store",
    show_default=True,
    help="chain: the hashes only; store or kafka: also every line against its events.",
)
def verify_command(export_file: TextIO, against: str) -> None:
    """Re-compute an export's chain and check its lines against the events; name the first bad line."""
    text = export_file.read()
    try:
        if against == "store":
            with opened_core(_settings()) as core:
                verdict = verify_export(text, StoreLookup(core.store.recorder))
        else:
            verify_export_against: EventLookup | None = None
            if against == "kafka":
                settings = _settings()
                if not settings.uses_kafka:
                    raise click.UsageError("--against kafka needs MODELYARD_KAFKA_BOOTSTRAP (cluster mode)")
                verify_export_against = KafkaLookup(settings.kafka_bootstrap, settings.kafka_topic)
            verdict = verify_export(text, verify_export_against)
    except MalformedExport as exc:
        raise click.ClickException(f"not an export: {exc}") from exc
    if not verdict.intact:
        raise click.ClickException(f"line {verdict.bad_line} is bad: {verdict.reason}")
    click.echo(f"intact: {verdict.lines} lines, chain head {verdict.head} (checked against {against})")


@audit.command("reconcile")
@click.option("--account", "account_id", default=None, help="One account (default: the whole installation).")
@click.option("--since", type=click.DateTime(), default=None, help="UTC; default: 30 days before --until.")
@click.option("--until", type=click.DateTime(), default=None, help="UTC; default: now.")
def reconcile_command(account_id: str | None, since: datetime | None, until: datetime | None) -> None:
    """Per deployment: replica-seconds served, minutes and dollars billed, tokens; flag differences."""
    end = (until or datetime.now(UTC)).replace(tzinfo=UTC)
    start = since.replace(tzinfo=UTC) if since else end - timedelta(days=30)
    with _operating() as core:
        rows = reconcile(core.store.recorder, core.views, account_id=account_id, since=start, until=end)
    click.echo(
        "deployment  model  replica_s  minutes  billed_usd  served_usd  diff_micros  tokens_in/out  flag"
    )
    for r in rows:
        flag = "FLAGGED" if r.flagged else "ok"
        money = f"{format_usd(r.billed_micros)}  {format_usd(r.served_micros)}  {r.difference_micros:+d}"
        tokens = f"{r.prompt_tokens}/{r.completion_tokens}"
        served = f"{r.replica_seconds}  {r.minutes_billed}"
        click.echo(f"{r.deployment_id}  {r.model}  {served}  {money}  {tokens}  {flag}")
    flagged = [r.deployment_id for r in rows if r.flagged]
    if flagged:
        raise click.ClickException(f"{len(flagged)} deployments billed beyond rounding of what they served")
