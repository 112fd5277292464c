"""Agent-side access commands over HTTP: the catalog, API keys, grants, organisations, usage."""

from __future__ import annotations

import json
from typing import Any

import click
import httpx

from modelyard.cli.agent import _client

PUBLIC = "/api/v1/public"


def _answer(response: httpx.Response) -> Any:
    """The second dialect's answer, or its error as the command's error line."""
    try:
        body = response.json()
    except ValueError:
        raise click.ClickException(f"HTTP {response.status_code}: {response.text[:200]}") from None
    if response.status_code >= 400:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        raise click.ClickException(f"{error.get('code')}: {error.get('message')}")
    return body


def _echo(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


@click.command()
@click.option("--available", is_flag=True, help="Only what this account's plan reaches.")
def models(available: bool) -> None:
    """The model catalog: context window, tier, price per hour, what serves it here."""
    with _client() as client:
        catalog = _answer(client.get(f"{PUBLIC}/models/available" if available else f"{PUBLIC}/models"))
    for m in catalog["data"]:
        engine = m["hardware"]["engine"] or "-"
        price = m["pricing"]["dedicated_per_hour_usd"]
        click.echo(f"{m['id']:<26} {m['tier']:<13} ctx {m['context_window']:<8} {price} USD/h  {engine}")


@click.group("api-keys")
def api_keys() -> None:
    """This account's API keys (over HTTP, with MODELYARD_API_KEY)."""


@api_keys.command("list")
def list_keys() -> None:
    """Every key: kind, name, grants, last use (never a secret)."""
    with _client() as client:
        keys = _answer(client.get(f"{PUBLIC}/keys"))["data"]
    for k in keys:
        grants = ",".join(p["deployment_id"] for p in k["permissions"]) or "-"
        state = "revoked" if k["revoked"] else "live"
        click.echo(
            f"{k['id']}  {k['kind']:<10} {state:<7} {k['name'] or '-':<16} "
            f"last used {k['last_used_at']}  {grants}"
        )


@api_keys.command("create")
@click.option("--name", default="", help="A label for the key.")
@click.option("--management", is_flag=True, help="A management key (else a scoped inference key).")
@click.option(
    "--deployment", "deployments", multiple=True, help="A deployment the scoped key reaches (repeat)."
)
@click.option("--idempotency-key", default=None, help="Retrying with the same key creates one key.")
def create_key(
    name: str, management: bool, deployments: tuple[str, ...], idempotency_key: str | None
) -> None:
    """Create a key; its secret is printed this once."""
    body = {"kind": "management" if management else "scoped", "name": name, "deployments": list(deployments)}
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    with _client() as client:
        key = _answer(client.post(f"{PUBLIC}/keys", json=body, headers=headers))
    click.echo(f"key_id: {key['id']}")
    if key["key"]:
        click.echo(f"api_key: {key['key']}")
        click.echo("The key is shown once; store it now.", err=True)
    else:
        click.echo("(a retry: the key was shown by the first call only)", err=True)


@api_keys.command("revoke")
@click.argument("key_id")
def revoke_key(key_id: str) -> None:
    """Revoke one of this account's keys."""
    with _client() as client:
        _answer(client.delete(f"{PUBLIC}/keys/{key_id}"))
    click.echo(f"{key_id} revoked")


@click.group()
def permissions() -> None:
    """Per-deployment grants to scoped keys."""


@permissions.command("grant")
@click.argument("deployment_id")
@click.argument("key_id")
@click.option("--role", default="inference", show_default=True)
def grant(deployment_id: str, key_id: str, role: str) -> None:
    """Let scoped key KEY_ID reach DEPLOYMENT_ID."""
    with _client() as client:
        _echo(
            _answer(
                client.post(
                    f"{PUBLIC}/deployments/{deployment_id}/permissions",
                    json={"api_key_id": key_id, "role": role},
                )
            )
        )


@permissions.command("revoke")
@click.argument("deployment_id")
@click.argument("key_id")
def revoke_grant(deployment_id: str, key_id: str) -> None:
    """Withdraw KEY_ID's access to DEPLOYMENT_ID."""
    with _client() as client:
        _echo(_answer(client.delete(f"{PUBLIC}/deployments/{deployment_id}/permissions/{key_id}")))


@click.group()
def orgs() -> None:
    """Organisations: members with permissions, shared deployments and credit."""


@orgs.command("create")
@click.argument("name")
def create_org(name: str) -> None:
    """Open an organisation; this account is its first member (every permission)."""
    with _client() as client:
        _echo(_answer(client.post(f"{PUBLIC}/orgs", json={"name": name})))


@orgs.command("list")
def list_orgs() -> None:
    """The organisations this account belongs to."""
    with _client() as client:
        _echo(_answer(client.get(f"{PUBLIC}/orgs"))["data"])


@orgs.command("add-member")
@click.argument("org_id")
@click.argument("account_id")
@click.option(
    "--permission",
    "perms",
    multiple=True,
    required=True,
    help="deployment:invoke, deployment:manage or org:admin (repeat).",
)
def add_member(org_id: str, account_id: str, perms: tuple[str, ...]) -> None:
    """Add ACCOUNT_ID to ORG_ID with permissions."""
    with _client() as client:
        _echo(
            _answer(
                client.post(
                    f"{PUBLIC}/orgs/{org_id}/members",
                    json={"account_id": account_id, "permissions": list(perms)},
                )
            )
        )


@orgs.command("remove-member")
@click.argument("org_id")
@click.argument("account_id")
def remove_member(org_id: str, account_id: str) -> None:
    """Remove ACCOUNT_ID from ORG_ID: it loses access at once."""
    with _client() as client:
        _echo(_answer(client.delete(f"{PUBLIC}/orgs/{org_id}/members/{account_id}")))


@click.command("usage-export")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="csv", show_default=True)
@click.option("--org", default=None, help="An organisation's usage (org:admin) instead of this account's.")
def usage_export(fmt: str, org: str | None) -> None:
    """Usage per deployment and minute: requests, tokens, USD charged."""
    path = f"{PUBLIC}/orgs/{org}/usage" if org else f"{PUBLIC}/usage/export"
    with _client() as client:
        response = client.get(path, params={"format": fmt})
    if fmt == "csv" and response.status_code < 400:
        click.echo(response.text, nl=False)
        return
    _echo(_answer(response))
