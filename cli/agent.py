"""Agent-side commands: talk to a modelyard API over HTTP (MODELYARD_URL, MODELYARD_API_KEY)."""

from __future__ import annotations

import time
from typing import Any

import click
import httpx

from modelyard.settings import SettingsError, load_agent_settings

# Polling a provisioning instance: often enough to feel live, rarely enough to be cheap.
POLL_INTERVAL_S = 1.0


def _client() -> httpx.Client:
    try:
        settings = load_agent_settings()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc
    if not settings.api_key:
        raise click.UsageError("set MODELYARD_API_KEY to your auxen_live_ management key")
    return httpx.Client(
        base_url=settings.url, headers={"Authorization": f"Bearer {settings.api_key}"}, timeout=300
    )


def _call(response: httpx.Response) -> dict[str, Any]:
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        raise click.ClickException(f"HTTP {response.status_code}: {response.text[:200]}") from None
    if not body.get("success"):
        error = body.get("error", {})
        raise click.ClickException(f"{error.get('code')}: {error.get('message')}")
    data: dict[str, Any] = body["data"]
    return data


def _show(instance: dict[str, Any]) -> None:
    for field in ("id", "status", "model", "capacity", "endpoint", "openai_base_url", "api_key"):
        if instance.get(field) is not None:
            click.echo(f"{field}: {instance[field]}")


@click.command()
@click.argument("model")
@click.option("--capacity", type=int, default=1, show_default=True, help="Replicas: 1, 2, 4 or 8.")
@click.option("--tier", default="dedicated", show_default=True, help="dedicated or shared.")
@click.option("--wait", is_flag=True, help="Wait until it runs, then print its endpoint and key.")
def provision(model: str, capacity: int, tier: str, wait: bool) -> None:
    """Provision an instance of MODEL."""
    with _client() as client:
        instance = _call(
            client.post("/v1/provision", json={"model": model, "capacity": capacity, "tier": tier})
        )["instance"]
        if wait:
            instance = _wait(client, instance)
    _show(instance)


def _wait(client: httpx.Client, instance: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    with click.progressbar(length=1, label=f"{instance['id']} provisioning", file=None) as bar:
        while instance["status"] == "provisioning":
            time.sleep(POLL_INTERVAL_S)
            instance = _call(client.get(f"/v1/instances/{instance['id']}"))["instance"]
            bar.label = f"{instance['id']} {instance['status']} ({time.monotonic() - started:.0f} s)"
            bar.render_progress()
        bar.update(1)
    if instance["status"] != "running":
        raise click.ClickException(
            f"{instance['id']} is {instance['status']}: {instance.get('failure_reason')}"
        )
    return instance


@click.command()
def instances() -> None:
    """List your instances."""
    with _client() as client:
        rows = _call(client.get("/v1/instances"))["instances"]
    for row in rows:
        click.echo(
            f"{row['id']}  {row['status']:<12} {row['model']:<24} "
            f"x{row['capacity']}  {row['charged_usd']} USD"
        )


@click.command()
@click.argument("instance_id")
@click.argument("message")
@click.option("--key", envvar="MODELYARD_INSTANCE_KEY", help="The instance's auxk_ key (shown once).")
def chat(instance_id: str, message: str, key: str | None) -> None:
    """Send MESSAGE to an instance and print the answer."""
    with _client() as client:
        if key is None:
            key = _call(client.get(f"/v1/instances/{instance_id}"))["instance"].get("api_key")
        if not key:
            raise click.UsageError(
                "the instance key was already used once; pass --key or MODELYARD_INSTANCE_KEY"
            )
        answer = _call(
            client.post(
                f"/v1/{instance_id}/chat",
                json={"message": message},
                headers={"Authorization": f"Bearer {key}"},
            )
        )
    click.echo(answer["message"])
    click.echo(
        f"[{answer['model']}, {answer['usage'].get('total_tokens')} tokens, {answer['response_time_ms']} ms]",
        err=True,
    )


@click.command()
@click.argument("instance_id")
@click.argument("capacity", type=int)
def scale(instance_id: str, capacity: int) -> None:
    """Scale an instance to CAPACITY replicas."""
    with _client() as client:
        _show(
            _call(client.post(f"/v1/instances/{instance_id}/scale", json={"capacity": capacity}))["instance"]
        )


@click.command()
@click.argument("instance_id")
def destroy(instance_id: str) -> None:
    """Destroy an instance; billing stops at once."""
    with _client() as client:
        _show(_call(client.delete(f"/v1/instances/{instance_id}"))["instance"])
