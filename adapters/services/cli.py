"""``modelyard services``: bring the local PostgreSQL and Kafka up, report them, stop them.

``--ray`` adds a local Ray head (one node on this machine) to place replicas on, for a
one-machine trial of ``MODELYARD_PLACEMENT=ray``.
"""

from __future__ import annotations

import json
import os
import time

import click

from modelyard.adapters.services.kafka import LocalKafka
from modelyard.adapters.services.postgres import LocalPostgres
from modelyard.adapters.services.process import ServiceError
from modelyard.adapters.services.ray import LocalRay
from modelyard.settings import load_settings


def local_services() -> tuple[LocalPostgres, LocalKafka]:
    """The two services, under the configured services folder."""
    root = load_settings().services_dir.resolve()
    return LocalPostgres(root / "postgres"), LocalKafka(root / "kafka")


def local_ray(resources: str = "{}") -> LocalRay:
    """A Ray head on this machine, advertising ``resources`` (JSON, e.g. {"gpu_type:h100": 1})."""
    root = load_settings().services_dir.resolve()
    try:
        advertised = {str(k): float(v) for k, v in json.loads(resources).items()}
    except (ValueError, AttributeError) as exc:
        raise click.BadParameter(f"--ray-resources must be a JSON object of numbers: {exc}") from None
    return LocalRay(root / "ray", num_cpus=os.cpu_count() or 1, resources=advertised)


@click.group()
def services() -> None:
    """Local PostgreSQL and Kafka for tests and cluster mode (no Docker needed)."""


@services.command()
@click.option("--ray", "with_ray", is_flag=True, help="also start a local Ray head to place replicas on")
@click.option(
    "--ray-resources",
    default="{}",
    help='custom resources the Ray head advertises, JSON: {"gpu_type:h100": 1, "region:nyc2": 1}',
)
def up(with_ray: bool, ray_resources: str) -> None:
    """Install what is missing and start both; prints the variables that use them."""
    chosen: list[LocalPostgres | LocalKafka | LocalRay] = [*local_services()]
    if with_ray:
        chosen.append(local_ray(ray_resources))
    for service in chosen:
        started = time.monotonic()
        try:
            service.up()
        except ServiceError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"# {type(service).__name__} ready in {time.monotonic() - started:.1f} s", err=True)
        for name, value in service.env().items():
            click.echo(f"export {name}={value}")


@services.command()
@click.option("--ray", "with_ray", is_flag=True, help="also say whether the local Ray head runs")
def status(with_ray: bool) -> None:
    """Say whether each service answers."""
    chosen: list[LocalPostgres | LocalKafka | LocalRay] = [*local_services()]
    if with_ray:
        chosen.append(local_ray())
    for service in chosen:
        state = "ready" if service.is_ready() else "down"
        click.echo(f"{type(service).__name__}: {state}")


@services.command()
def down() -> None:
    """Stop both, and the local Ray head if it runs; their data stays for the next ``up``."""
    chosen: list[LocalPostgres | LocalKafka | LocalRay] = [*local_services(), local_ray()]
    for service in chosen:
        service.down()
