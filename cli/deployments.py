"""Agent-side commands for the second dialect: deployments, their scaling and SLA, metrics.

They talk to ``/api/v1/public/…`` over HTTP with MODELYARD_URL and MODELYARD_API_KEY, as the
first dialect's commands do, and fail the same way: a refusal prints ``CODE: message`` and
exits 1, a bad command line exits 2.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click
import httpx

from modelyard.settings import SettingsError, load_agent_settings

BASE = "/api/v1/public/deployments"
# Polling a provisioning deployment: often enough to feel live, rarely enough to be cheap.
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
    """The answer's JSON object, or the refusal as ``CODE: message`` (exit 1)."""
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        raise click.ClickException(f"HTTP {response.status_code}: {response.text[:200]}") from None
    if response.status_code >= 400:
        error = body.get("error", {})
        raise click.ClickException(f"{error.get('code')}: {error.get('message')}")
    return body


def _show(fields: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        value = fields.get(name)
        if value is not None:
            shown = json.dumps(value) if isinstance(value, dict | list) else value
            click.echo(f"{name}: {shown}")


_DEPLOYMENT = (
    "id", "name", "status", "model_id", "tier", "gpu_type", "region", "preset", "replicas", "ready_replicas",
    "engine", "endpoint", "api_key", "failure_reason", "price_per_hour_usd", "charged_usd",
)  # fmt: skip


@click.group()
def deployments() -> None:
    """Create, list, show and delete deployments (the second dialect)."""


@deployments.command("create")
@click.argument("model_id")
@click.option("--name", default="", help="A name to know it by.")
@click.option(
    "--gpu-type", help="h100, mi300x, mi300x_8, mi325x or mi325x_8 (default: what this cluster has)."
)
@click.option("--region", help="atl1, nyc2, tor1 or ric1.")
@click.option("--replicas", type=int, default=1, show_default=True, help="1, 2, 4 or 8.")
@click.option("--preset", default="balanced", show_default=True, help="speed, latency, cost or balanced.")
@click.option("--wait", is_flag=True, help="Wait until it is active, then print its endpoint and key.")
def create(
    *,
    model_id: str,
    name: str,
    gpu_type: str | None,
    region: str | None,
    replicas: int,
    preset: str,
    wait: bool,
) -> None:
    """Create a deployment of MODEL_ID."""
    body: dict[str, Any] = {"model_id": model_id, "name": name, "gpu_type": gpu_type, "region": region}
    body |= {"replicas": replicas, "preset": preset}
    with _client() as client:
        deployment = _call(client.post(BASE, json={k: v for k, v in body.items() if v is not None}))
        if wait:
            deployment = _wait(client, deployment)
    _show(deployment, _DEPLOYMENT)


def _wait(client: httpx.Client, deployment: dict[str, Any]) -> dict[str, Any]:
    while deployment["status"] == "provisioning":
        time.sleep(POLL_INTERVAL_S)
        deployment = _call(client.get(f"{BASE}/{deployment['id']}"))
    if deployment["status"] != "active":
        raise click.ClickException(
            f"{deployment['id']} is {deployment['status']}: {deployment.get('failure_reason')}"
        )
    return deployment


@deployments.command("list")
def list_deployments() -> None:
    """List your deployments."""
    with _client() as client:
        rows = _call(client.get(BASE))["deployments"]
    for row in rows:
        click.echo(
            f"{row['id']}  {row['status']:<12} {row['model_id']:<24} x{row['replicas']}  "
            f"{row['preset']:<8} {row['charged_usd']} USD"
        )


@deployments.command("get")
@click.argument("deployment_id")
def get_deployment(deployment_id: str) -> None:
    """Show one deployment."""
    with _client() as client:
        _show(_call(client.get(f"{BASE}/{deployment_id}")), (*_DEPLOYMENT, "scaling", "sla"))


@deployments.command("delete")
@click.argument("deployment_id")
def delete_deployment(deployment_id: str) -> None:
    """Tear a deployment down; billing stops and is settled at once."""
    with _client() as client:
        _show(_call(client.delete(f"{BASE}/{deployment_id}")), _DEPLOYMENT)


@click.group()
def scaling() -> None:
    """Show or set a deployment's autoscaling."""


@scaling.command("get")
@click.argument("deployment_id")
def get_scaling(deployment_id: str) -> None:
    """Show the autoscaling policy."""
    with _client() as client:
        click.echo(json.dumps(_call(client.get(f"{BASE}/{deployment_id}/scaling")), indent=2))


@scaling.command("set")
@click.argument("deployment_id")
@click.option("--min-replicas", type=int)
@click.option("--max-replicas", type=int)
@click.option("--scale-to-zero/--no-scale-to-zero", default=None)
@click.option("--idle-timeout-seconds", type=int)
def set_scaling(
    deployment_id: str,
    min_replicas: int | None,
    max_replicas: int | None,
    scale_to_zero: bool | None,
    idle_timeout_seconds: int | None,
) -> None:
    """Set the fields given; the others keep their values."""
    body = {
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "scale_to_zero": scale_to_zero,
        "idle_timeout_seconds": idle_timeout_seconds,
    }
    with _client() as client:
        answer = _call(
            client.patch(
                f"{BASE}/{deployment_id}/scaling", json={k: v for k, v in body.items() if v is not None}
            )
        )
    click.echo(json.dumps(answer, indent=2))


@click.group()
def sla() -> None:
    """Show or set a deployment's SLA targets."""


@sla.command("get")
@click.argument("deployment_id")
def get_sla(deployment_id: str) -> None:
    """Show the targets and the breach history."""
    with _client() as client:
        click.echo(json.dumps(_call(client.get(f"{BASE}/{deployment_id}/sla")), indent=2))


@sla.command("set")
@click.argument("deployment_id")
@click.option("--ttft-target-ms", type=int)
@click.option("--throughput-target-tps", type=int)
@click.option("--concurrency-limit", type=int)
def set_sla(
    deployment_id: str,
    ttft_target_ms: int | None,
    throughput_target_tps: int | None,
    concurrency_limit: int | None,
) -> None:
    """Set the targets given; the others keep their values."""
    body = {
        "ttft_target_ms": ttft_target_ms,
        "throughput_target_tps": throughput_target_tps,
        "concurrency_limit": concurrency_limit,
    }
    with _client() as client:
        answer = _call(
            client.patch(f"{BASE}/{deployment_id}/sla", json={k: v for k, v in body.items() if v is not None})
        )
    click.echo(json.dumps(answer, indent=2))


@click.command()
@click.argument("deployment_id", required=False)
@click.option(
    "--window-minutes", type=int, help="The window to sum over (default: 60, or 5 for a deployment)."
)
def metrics(deployment_id: str | None, window_minutes: int | None) -> None:
    """Usage per model, or one deployment's TTFT, throughput, concurrency and SLA breaches."""
    path = f"{BASE}/{deployment_id}/metrics" if deployment_id else "/api/v1/public/inference/metrics"
    params = {"window_minutes": window_minutes} if window_minutes is not None else {}
    with _client() as client:
        click.echo(json.dumps(_call(client.get(path, params=params)), indent=2))
