"""Rows of the deployments view, as each dialect shows them."""

from __future__ import annotations

from modelyard.api.instances.schemas import CatalogModel, Instance, ModelPrices, WaitingForCapacity
from modelyard.domain.billing.pricing import CAPACITY_TENTHS, Tier, hourly_micros
from modelyard.domain.catalog.models import ModelSpec, Size
from modelyard.domain.shared import ids
from modelyard.domain.shared.money import format_usd
from modelyard.projections.deployments.queries import SERVING, CapacityWait, Deployment


def price_per_hour(tier: str, size: str, capacity: int) -> int:
    """Micro-dollars per hour at this capacity."""
    return hourly_micros(Tier(tier), Size(size)) * CAPACITY_TENTHS[capacity] // 10


def instance(row: Deployment, base_url: str, secret: str | None, hint: str | None) -> Instance:
    """A deployments row in the first document's shape: every deployment prints as ``inst_…``."""
    dep_id = ids.instance_ref(row.id)
    serving = row.state in SERVING
    endpoint = f"{base_url}/v1/{dep_id}" if serving else None
    return Instance(
        id=dep_id,
        name=row.name,
        model=row.model,
        tier=row.tier,
        capacity=row.capacity,
        status=row.status_v1,
        endpoint=endpoint,
        openai_base_url=f"{endpoint}/v1" if endpoint else None,
        api_key=secret if serving else None,
        api_key_hint=hint,
        failure_reason=row.failure_reason,
        waiting_for_capacity=waiting(row.waiting_for_capacity),
        price_per_hour_usd=format_usd(price_per_hour(row.tier, row.size, row.capacity)),
        charged_usd=format_usd(row.charged),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def waiting(wait: CapacityWait | None) -> WaitingForCapacity | None:
    """A deployment's wait for capacity as both dialects show it."""
    return None if wait is None else WaitingForCapacity(since=wait.since, reason=wait.reason)


def model(spec: ModelSpec) -> CatalogModel:
    """A catalog entry with its prices per hour at 1x (shared only for small models)."""
    size = spec.size.value
    shared = format_usd(price_per_hour("shared", size, 1)) if size == "small" else None
    return CatalogModel(
        id=spec.id,
        name=spec.name,
        size=size,
        kind=spec.kind.value,
        plan=spec.plan.value,
        context_window=spec.context_window,
        cpu=spec.cpu,
        price_per_hour_usd=ModelPrices(
            dedicated=format_usd(price_per_hour("dedicated", size, 1)), shared=shared
        ),
    )
