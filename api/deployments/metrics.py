"""Observability (FEATURES E1, E2): usage per model, and one deployment's figures.

``GET /api/v1/public/inference/metrics``: per model, the tokens, the cost (what its
deployments were charged), latency percentiles and the error rate over a window, from the
metrics and ledger views. ``GET …/deployments/{id}/metrics``: the deployment's TTFT,
throughput, active concurrency and replicas, with its SLA targets and breach history; TTFT
and concurrency are read from its replicas' own metrics when they answer (real time), the
rest from the views. A shared deployment's live figures would be its pool replica's, that is
every tenant's, so they are not shown; its own usage from the views is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter, SkipValidation

from modelyard.adapters.engines.base import EngineStats
from modelyard.adapters.views.db import ViewDatabase
from modelyard.api.auth import Principal
from modelyard.api.deployments import presenters, schemas
from modelyard.api.errors import COMMON_OPENAI_ERRORS, OPENAI_ERRORS
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import InstanceNotFound
from modelyard.domain.shared.money import format_usd
from modelyard.projections.balances.windowed import charges_since
from modelyard.projections.deployments.public import (
    deployment_of_account,
    deployments_of_account,
    sla_history,
)
from modelyard.projections.deployments.queries import ReplicaRoute, serving_replicas
from modelyard.projections.metrics.queries import Usage, usage_by_model, usage_of_deployment

# Windows a caller may ask for: a minute to a week.
Window = Annotated[int, QueryParameter(name="window_minutes", ge=1, le=10_080)]
ReadReplicas = Callable[[Sequence[ReplicaRoute]], EngineStats | None]


class Percentiles(msgspec.Struct, frozen=True, kw_only=True):
    """p50, p95 and p99 in milliseconds (null before any request)."""

    p50: float | None
    p95: float | None
    p99: float | None


class ModelUsage(msgspec.Struct, frozen=True, kw_only=True):
    """One model's usage over the window."""

    model: str
    requests: int
    errors: int
    error_rate: float
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: str
    latency_ms: Percentiles


class InferenceMetrics(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/v1/public/inference/metrics``."""

    object: str
    window_minutes: int
    models: list[ModelUsage]


class DeploymentMetrics(msgspec.Struct, frozen=True, kw_only=True):
    """``GET …/deployments/{id}/metrics``: ``live`` says whether the replicas answered."""

    deployment_id: str
    status: str
    window_minutes: int
    replicas: int
    ready_replicas: int
    live: bool
    active_concurrency: int | None
    requests_running: int | None
    requests_waiting: int | None
    ttft_ms: Percentiles
    throughput_tps: float
    requests: int
    errors: int
    error_rate: float
    completion_tokens: int
    latency_ms: Percentiles
    sla: schemas.SlaTargets
    sla_breaches: list[schemas.SlaEvent]


def _since(window: int) -> str:
    start = datetime.now(UTC) - timedelta(minutes=window - 1)
    return start.strftime("%Y-%m-%dT%H:%M")


def _latency(usage: Usage) -> Percentiles:
    return Percentiles(p50=usage.latency_ms_p50, p95=usage.latency_ms_p95, p99=usage.latency_ms_p99)


def _ttft(live: EngineStats | None, usage: Usage) -> Percentiles:
    """The engine's own TTFT histogram when the replicas answered, else the gateway's records."""
    if live is not None and live.ttft_count:
        shown = [live.ttft_percentile_s(q) for q in (50, 95, 99)]
        p50, p95, p99 = (None if s is None else round(s * 1000, 3) for s in shown)
        return Percentiles(p50=p50, p95=p95, p99=p99)
    return Percentiles(p50=usage.ttft_ms_p50, p95=usage.ttft_ms_p95, p99=usage.ttft_ms_p99)


class Observability:
    """Reads the metrics, ledger and deployments views, and the replicas' own metrics."""

    def __init__(self, views: ViewDatabase, read_replicas: ReadReplicas) -> None:
        self._views, self._read_replicas = views, read_replicas

    def inference(self, principal: Principal, window: int) -> InferenceMetrics:
        """Per model: tokens, cost, latency percentiles and error rate over the window."""
        since = _since(window)
        with self._views.read() as tx:
            usage = usage_by_model(tx, principal.account_id, since)
            charged = charges_since(tx, principal.account_id, since)
            models_of = {d.id: d.model for d in deployments_of_account(tx, principal.account_id)}
        cost: dict[str, int] = {}
        for deployment, amount in charged.items():
            model = models_of.get(deployment)
            if model is not None:
                cost[model] = cost.get(model, 0) + amount
        shown = [
            ModelUsage(
                model=model,
                requests=u.requests,
                errors=u.errors,
                error_rate=u.error_rate,
                prompt_tokens=u.prompt_tokens,
                completion_tokens=u.completion_tokens,
                total_tokens=u.total_tokens,
                cost_usd=format_usd(cost.get(model, 0)),
                latency_ms=_latency(u),
            )
            for model, u in usage.items()
        ]
        idle = sorted(set(cost) - set(usage))
        empty = Percentiles(p50=None, p95=None, p99=None)
        shown += [
            ModelUsage(model=m, requests=0, errors=0, error_rate=0.0, prompt_tokens=0, completion_tokens=0,
                       total_tokens=0, cost_usd=format_usd(cost[m]), latency_ms=empty)
            for m in idle
        ]  # fmt: skip
        return InferenceMetrics(object="inference.metrics", window_minutes=window, models=shown)

    def deployment(self, principal: Principal, deployment_id: str, window: int) -> DeploymentMetrics:
        """The deployment's figures now and over the window, with its SLA and breaches."""
        deployment = ids.parse_deployment_id(deployment_id)
        with self._views.read() as tx:
            row = deployment_of_account(tx, principal.account_id, deployment)
            if row is None:
                raise InstanceNotFound(f"No deployment {deployment_id} on this account.")
            usage = usage_of_deployment(tx, deployment, _since(window))
            routes = serving_replicas(tx, deployment)
            history = sla_history(tx, deployment)
        # A shared deployment's replica is its pool's: its figures are every tenant's traffic.
        live = self._read_replicas(routes) if routes and row.tier != "shared" else None
        return DeploymentMetrics(
            deployment_id=ids.deployment_ref(deployment),
            status=row.status,
            window_minutes=window,
            replicas=row.capacity,
            ready_replicas=row.replicas,
            live=live is not None,
            active_concurrency=None if live is None else live.running + live.waiting,
            requests_running=None if live is None else live.running,
            requests_waiting=None if live is None else live.waiting,
            ttft_ms=_ttft(live, usage),
            throughput_tps=round(usage.completion_tokens / (window * 60), 3),
            requests=usage.requests,
            errors=usage.errors,
            error_rate=usage.error_rate,
            completion_tokens=usage.completion_tokens,
            latency_ms=_latency(usage),
            sla=presenters.sla(row),
            sla_breaches=presenters.sla_answer(row, history).breaches,
        )


Uses = NamedDependency[SkipValidation[Observability]]


class InferenceMetricsController(Controller):
    """``/api/v1/public/inference/metrics`` and ``…/deployments/{id}/metrics``."""

    path = "/api/v1/public"
    tags = ["metrics"]
    opt = OPENAI_ERRORS

    @get(
        "/inference/metrics",
        operation_id="inferenceMetrics",
        sync_to_thread=True,
        responses=COMMON_OPENAI_ERRORS,
    )
    def inference(
        self, observability: Uses, request: Request[Principal, Any, Any], window_minutes: Window = 60
    ) -> InferenceMetrics:
        """Per model: tokens, cost, latency p50/p95/p99 and error rate over the last ``window_minutes``."""
        return observability.inference(request.user, window_minutes)

    @get(
        "/deployments/{deployment_id:str}/metrics",
        operation_id="deploymentMetrics",
        sync_to_thread=True,
        responses=COMMON_OPENAI_ERRORS,
    )
    def deployment(
        self,
        observability: Uses,
        request: Request[Principal, Any, Any],
        deployment_id: FromPath[str],
        window_minutes: Window = 5,
    ) -> DeploymentMetrics:
        """TTFT, throughput (tok/s), active concurrency, replicas, SLA targets and breach history."""
        return observability.deployment(request.user, deployment_id, window_minutes)
