"""Rows of the deployments view, as each dialect shows them."""

from __future__ import annotations

from typing import Any

from modelyard.api.instances.schemas import Instance
from modelyard.domain.billing.pricing import CAPACITY_TENTHS, Tier, hourly_micros
from modelyard.domain.catalog.models import Size
from modelyard.domain.shared.money import format_usd
from modelyard.projections.base import Tx

COLUMNS = (
    "id, name, model, tier, capacity, status_v1, state, failure_reason, size, charged, created_at, updated_at"
)
SERVING = ("running", "scaling", "degraded")


def price_per_hour(tier: str, size: str, capacity: int) -> int:
    """Micro-dollars per hour at this capacity."""
    return hourly_micros(Tier(tier), Size(size)) * CAPACITY_TENTHS[capacity] // 10


def instance(row: tuple[Any, ...], base_url: str, secret: str | None, hint: str | None) -> Instance:
    """A deployments row in the first document's shape."""
    dep_id, name, model, tier, capacity, status, state, reason, size, charged, created, updated = row
    serving = state in SERVING
    endpoint = f"{base_url}/v1/{dep_id}" if serving else None
    return Instance(
        id=dep_id,
        name=name,
        model=model,
        tier=tier,
        capacity=int(capacity),
        status=status,
        endpoint=endpoint,
        openai_base_url=f"{endpoint}/v1" if endpoint else None,
        api_key=secret if serving else None,
        api_key_hint=hint,
        failure_reason=reason,
        price_per_hour_usd=format_usd(price_per_hour(tier, size, int(capacity))),
        charged_usd=format_usd(int(charged)),
        created_at=created,
        updated_at=updated,
    )


def load_instances(tx: Tx, account_id: str, dep_id: str | None = None) -> list[tuple[Any, ...]]:
    """The account's deployments rows (one, when ``dep_id`` is given)."""
    if dep_id is None:
        return tx.execute(
            f"SELECT {COLUMNS} FROM deployments WHERE account_id = %s ORDER BY created_at",  # noqa: S608
            [account_id],
        )
    return tx.execute(
        f"SELECT {COLUMNS} FROM deployments WHERE account_id = %s AND id = %s",  # noqa: S608
        [account_id, dep_id],
    )
