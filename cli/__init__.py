"""The ``modelyard`` command: one tool for operators and agents.

This module is the composition root for processes started from the command line; it is
the only place that may import both the API and the workers.
"""

from __future__ import annotations

import click

from modelyard import __version__
from modelyard.settings import Settings, SettingsError, load_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelyard")
def main() -> None:
    """modelyard: provision private model deployments, call them, destroy them."""


@main.command()
@click.option("--host", default=None, help="Address to listen on (MODELYARD_HOST).")
@click.option("--port", default=None, type=int, help="Port to listen on (MODELYARD_PORT).")
def serve(host: str | None, port: int | None) -> None:
    """Run the whole product in one process on the embedded default."""
    import uvicorn

    from modelyard.api.app import create_app

    settings = _settings()
    app = create_app(settings)
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port if port is not None else settings.port,
        log_level="info",
    )


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc


def _register_subcommands() -> None:
    from modelyard.adapters.services.cli import services
    from modelyard.cli.operator import accounts, audit, credits

    for command in (services, accounts, credits, audit):
        main.add_command(command)


_register_subcommands()
