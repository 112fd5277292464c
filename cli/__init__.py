"""The ``modelyard`` command: one tool for operators and agents.

This module is the composition root for processes started from the command line; it is
the only place that may import both the API and the workers.
"""

from __future__ import annotations

import click

from modelyard import __version__
from modelyard.adapters.logs import configure_logging
from modelyard.settings import SettingsError, load_log_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelyard")
def main() -> None:
    """modelyard: provision private model deployments, call them, destroy them."""
    # Every subcommand is a process of its own: logging is configured once, here, first.
    try:
        configure_logging(load_log_settings().level)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc


def _register_subcommands() -> None:
    from modelyard.adapters.services.cli import services
    from modelyard.cli.access import api_keys, models, orgs, permissions, usage_export
    from modelyard.cli.agent import chat, destroy, instances, provision, scale
    from modelyard.cli.deployments import deployments, metrics, scaling, sla
    from modelyard.cli.low_balance import low_balance
    from modelyard.cli.operator import accounts, audit, credits, keys
    from modelyard.cli.processes import api, serve, worker
    from modelyard.cli.webhooks import webhooks

    commands = (serve, api, worker, services, accounts, credits, keys, audit)
    access = (models, api_keys, permissions, orgs, usage_export)
    for command in (*commands, provision, instances, chat, scale, destroy, webhooks, *access):
        main.add_command(command)
    for command in (deployments, scaling, sla, metrics):  # the second dialect's
        main.add_command(command)
    main.add_command(low_balance)


_register_subcommands()
