"""``modelyard services``: bring the local PostgreSQL and Kafka up, report them, stop them."""

from __future__ import annotations

import time

import click

from modelyard.adapters.services.kafka import LocalKafka
from modelyard.adapters.services.postgres import LocalPostgres
from modelyard.adapters.services.process import ServiceError
from modelyard.settings import load_settings


def local_services() -> tuple[LocalPostgres, LocalKafka]:
    """The two services, under the configured services folder."""
    root = load_settings().services_dir.resolve()
    return LocalPostgres(root / "postgres"), LocalKafka(root / "kafka")


@click.group()
def services() -> None:
    """Local PostgreSQL and Kafka for tests and cluster mode (no Docker needed)."""


@services.command()
def up() -> None:
    """Install what is missing and start both; prints the variables that use them."""
    for service in local_services():
        started = time.monotonic()
        try:
            service.up()
        except ServiceError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"# {type(service).__name__} ready in {time.monotonic() - started:.1f} s", err=True)
        for name, value in service.env().items():
            click.echo(f"export {name}={value}")


@services.command()
def status() -> None:
    """Say whether each service answers."""
    for service in local_services():
        state = "ready" if service.is_ready() else "down"
        click.echo(f"{type(service).__name__}: {state}")


@services.command()
def down() -> None:
    """Stop both; their data stays for the next ``up``."""
    for service in local_services():
        service.down()
