"""Rows of the deployments view as the second dialect shows them."""

from __future__ import annotations

from collections.abc import Callable

from modelyard.api.deployments import schemas
from modelyard.api.instances.presenters import price_per_hour, waiting
from modelyard.domain.shared import ids
from modelyard.domain.shared.money import format_usd
from modelyard.projections.deployments.public import PublicDeployment, SlaEvent
from modelyard.projections.deployments.queries import SERVING

# (model, preset) -> the engine that would serve it here and its arguments, or None.
EngineOf = Callable[[str, str], schemas.Engine | None]

# The path every second-dialect route hangs off.
BASE_PATH = "/api/v1/public/deployments"


def scaling(row: PublicDeployment) -> schemas.Scaling:
    """The row's autoscaling policy."""
    policy = row.autoscaling
    return schemas.Scaling(
        min_replicas=policy.min_replicas,
        max_replicas=policy.max_replicas,
        scale_to_zero=policy.scale_to_zero,
        idle_timeout_seconds=policy.idle_timeout_seconds,
    )


def sla(row: PublicDeployment) -> schemas.SlaTargets:
    """The row's SLA targets."""
    targets = row.sla
    return schemas.SlaTargets(
        ttft_target_ms=targets.ttft_target_ms,
        throughput_target_tps=targets.throughput_target_tps,
        concurrency_limit=targets.concurrency_limit,
    )


def deployment(
    row: PublicDeployment, base_url: str, engine_of: EngineOf, secret: str | None, hint: str | None
) -> schemas.Deployment:
    """A deployments row in the second document's shape: every deployment prints as ``dep_…``."""
    dep_id = ids.deployment_ref(row.id)
    serving = row.state in SERVING
    return schemas.Deployment(
        id=dep_id,
        object="deployment",
        name=row.name,
        model_id=row.model,
        tier=row.tier,
        gpu_type=row.gpu_type,
        region=row.region,
        preset=row.preset,
        engine=engine_of(row.model, row.preset),
        replicas=row.capacity,
        ready_replicas=row.replicas,
        status=row.status,
        endpoint=f"{base_url}{BASE_PATH}/{dep_id}" if serving else None,
        api_key=secret if serving else None,
        api_key_hint=hint,
        failure_reason=row.failure_reason,
        waiting_for_capacity=waiting(row.waiting_for_capacity),
        scaling=scaling(row),
        sla=sla(row),
        price_per_hour_usd=format_usd(price_per_hour(row.tier, row.size, row.capacity)),
        charged_usd=format_usd(row.charged),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def scaling_answer(row: PublicDeployment) -> schemas.ScalingAnswer:
    """The policy with the deployment's replicas now."""
    policy = scaling(row)
    return schemas.ScalingAnswer(
        deployment_id=ids.deployment_ref(row.id),
        replicas=row.replicas,
        status=row.status,
        min_replicas=policy.min_replicas,
        max_replicas=policy.max_replicas,
        scale_to_zero=policy.scale_to_zero,
        idle_timeout_seconds=policy.idle_timeout_seconds,
    )


def sla_answer(row: PublicDeployment, history: list[SlaEvent]) -> schemas.SlaAnswer:
    """The targets and the breach history."""
    targets = sla(row)
    return schemas.SlaAnswer(
        deployment_id=ids.deployment_ref(row.id),
        ttft_target_ms=targets.ttft_target_ms,
        throughput_target_tps=targets.throughput_target_tps,
        concurrency_limit=targets.concurrency_limit,
        breaches=[
            schemas.SlaEvent(metric=e.metric, kind=e.kind, value=e.value, target=e.target, at=e.at)
            for e in history
        ],
    )
