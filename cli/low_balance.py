"""``modelyard low-balance``: the account's low-balance policy and what each deployment allows.

Over HTTP with MODELYARD_URL and MODELYARD_API_KEY, failing as the other agent commands do
(a refusal prints ``CODE: message`` and exits 1).
"""

from __future__ import annotations

import json

import click

from modelyard.cli.deployments import BASE, _call, _client

POLICY = "/v1/account/low-balance-policy"
ALLOWANCES = ("keep", "scale_to_zero", "cheaper_preset")


@click.group("low-balance")
def low_balance() -> None:
    """Warn, then degrade what allows it, when credit runs low; undone when credit is added."""


@low_balance.command("get")
def get_policy() -> None:
    """Show the account's thresholds (its own, or the operator's default)."""
    with _client() as client:
        click.echo(json.dumps(_call(client.get(POLICY))["data"], indent=2))


@low_balance.command("set")
@click.option("--notify-below", required=True, help="USD: account.credits_low when a charge crosses it.")
@click.option(
    "--degrade-below",
    required=True,
    help="USD: below it, what allows it is degraded (<= notify).",
)
def set_policy(notify_below: str, degrade_below: str) -> None:
    """Replace the account's thresholds ("0" turns one off)."""
    body = {"notify_below": notify_below, "degrade_below": degrade_below}
    with _client() as client:
        click.echo(json.dumps(_call(client.put(POLICY, json=body))["data"], indent=2))


@low_balance.command("deployment")
@click.argument("deployment_id")
@click.option("--allow", type=click.Choice(ALLOWANCES), help="What it allows when the account runs low.")
def deployment(deployment_id: str, allow: str | None) -> None:
    """Show (or, with --allow, set) what a deployment allows when its account runs low."""
    path = f"{BASE}/{deployment_id}/low-balance"
    with _client() as client:
        answer = client.get(path) if allow is None else client.patch(path, json={"on_low_balance": allow})
        click.echo(json.dumps(_call(answer), indent=2))
