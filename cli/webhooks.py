"""Agent-side webhook commands: subscribe, list, remove, rotate, deliveries, re-drive (over HTTP)."""

from __future__ import annotations

from typing import Any

import click

from modelyard.cli.agent import _call, _client

EVENTS = (
    "deployment.active",
    "deployment.degraded",
    "deployment.sla_breach",
    "deployment.recovered",
    "deployment.scaled",
    "deployment.preset_changed",
    "account.credits_low",
    "account.credits_exhausted",
)


def _base(deployment_id: str) -> str:
    # The second dialect's paths take either dialect's id.
    return f"/api/v1/public/deployments/{deployment_id}/webhooks"


def _show(webhook: dict[str, Any]) -> None:
    for field in ("id", "deployment_id", "url", "status", "secret"):
        if webhook.get(field) is not None:
            click.echo(f"{field}: {webhook[field]}")
    click.echo(f"events: {','.join(webhook['events'])}")


@click.group()
def webhooks() -> None:
    """Webhooks: a deployment's events pushed to your URL, signed."""


@webhooks.command("add")
@click.argument("deployment_id")
@click.argument("url")
@click.option(
    "--event",
    "events",
    multiple=True,
    type=click.Choice(EVENTS),
    help="An event to send (repeat); default all.",
)
def add(deployment_id: str, url: str, events: tuple[str, ...]) -> None:
    """Subscribe URL to DEPLOYMENT_ID's events; prints the signing secret, shown this once."""
    with _client() as client:
        body = {"url": url, "events": list(events or EVENTS)}
        _show(_call(client.post(_base(deployment_id), json=body))["webhook"])
    click.echo("The secret is shown once; store it now.", err=True)


@webhooks.command("list")
@click.argument("deployment_id")
def list_webhooks(deployment_id: str) -> None:
    """List DEPLOYMENT_ID's subscriptions."""
    with _client() as client:
        rows = _call(client.get(_base(deployment_id)))["webhooks"]
    for row in rows:
        click.echo(f"{row['id']}  {row['status']:<8} {row['url']}  {','.join(row['events'])}")


@webhooks.command("remove")
@click.argument("deployment_id")
@click.argument("webhook_id")
def remove(deployment_id: str, webhook_id: str) -> None:
    """End a subscription."""
    with _client() as client:
        _show(_call(client.delete(f"{_base(deployment_id)}/{webhook_id}"))["webhook"])


@webhooks.command("rotate")
@click.argument("deployment_id")
@click.argument("webhook_id")
def rotate(deployment_id: str, webhook_id: str) -> None:
    """A new signing secret (shown once); the old one keeps signing for the overlap window."""
    with _client() as client:
        _show(_call(client.post(f"{_base(deployment_id)}/{webhook_id}/rotate-secret"))["webhook"])


@webhooks.command("deliveries")
@click.argument("deployment_id")
@click.argument("webhook_id")
@click.option("--dead", is_flag=True, help="Only the dead letters.")
def deliveries(deployment_id: str, webhook_id: str, dead: bool) -> None:
    """A subscription's deliveries, newest first, with every try."""
    params = {"status": "dead"} if dead else {}
    with _client() as client:
        rows = _call(client.get(f"{_base(deployment_id)}/{webhook_id}/deliveries", params=params))[
            "deliveries"
        ]
    for row in rows:
        tries = " ".join(str(a["status_code"] or a["error"]) for a in row["attempts"])
        click.echo(f"{row['id']}  {row['event']:<26} {row['status']:<10} tries: {tries}")


@webhooks.command("redrive")
@click.argument("deployment_id")
@click.argument("webhook_id")
def redrive(deployment_id: str, webhook_id: str) -> None:
    """Send a subscription's dead letters again."""
    with _client() as client:
        count = _call(client.post(f"{_base(deployment_id)}/{webhook_id}/redrive"))["redriven"]
    click.echo(f"{count} dead letters queued to be sent again")
