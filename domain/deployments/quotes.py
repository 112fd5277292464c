"""What a deployment would cost before it is asked for: the provision's own decision, dry.

A quote runs ``commands.request_deployment`` — the very function a provision runs — and
records nothing. Its price is the hold the provision would take (one minute at the
deployment's price), so a quote can never name a different price than the provision
charges. A request the catalog refuses is refused the same way; one this cluster cannot
place, or the account cannot afford now (credit, quota), is still priced, and says why a
provision would be refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import msgspec

from modelyard.domain.accounts.aggregate import Account
from modelyard.domain.billing.pricing import (
    CAPACITY_TENTHS,
    check_capacity,
    check_tier,
    hourly_micros,
    minute_price,
)
from modelyard.domain.catalog.fit import HostCapacity, check_fit
from modelyard.domain.catalog.hardware import parse_preset
from modelyard.domain.catalog.models import Plan, deployable_model
from modelyard.domain.catalog.plans import PLAN_QUOTAS, Quota
from modelyard.domain.deployments.commands import request_deployment
from modelyard.domain.shared.errors import (
    InsufficientCredits,
    PlanUpgradeRequired,
    ProvisioningFailed,
    QuotaExceeded,
)


class Quote(msgspec.Struct, frozen=True, kw_only=True):
    """The price of a deployment as asked, and whether the account could start it now."""

    model: str
    size: str
    tier: str
    capacity: int
    preset: str
    gpu_type: str | None
    region: str | None
    # What each full minute costs (the hold a provision takes), and an hour at the table's price.
    minute_micros: int
    hour_micros: int
    # Whether the cluster can place it (a provision is refused at once when it cannot), and why not.
    placeable: bool
    placement_refusal: str | None
    # None when a provision would be admitted now; else the code and reason it would be refused.
    refusal: str | None


def quote_deployment(
    account: Account,
    *,
    model: str,
    capacity: int = 1,
    tier: str = "dedicated",
    gpu_type: str | None = None,
    region: str | None = None,
    preset: str = "balanced",
    at: datetime,
    quotas: Mapping[Plan, Quota] = PLAN_QUOTAS,
    host: HostCapacity | None = None,
) -> Quote:
    """Price ``model`` as a provision would; catalog errors raise as the provision's do."""
    refusal, minute = None, None
    try:
        admitted = request_deployment(
            account, model=model, capacity=capacity, tier=tier, gpu_type=gpu_type, region=region,
            preset=preset, at=at, quotas=quotas, host=host,
        )  # fmt: skip
        minute = admitted.reserved.amount
    except (PlanUpgradeRequired, ProvisioningFailed, InsufficientCredits, QuotaExceeded) as exc:
        # Refused for the plan's, the cluster's or the account's sake: still priced.
        refusal = f"{exc.code}: {exc.message}"
    spec = deployable_model(model)
    parsed_tier = check_tier(tier, spec.size, check_capacity(capacity))
    if minute is None:
        minute = minute_price(tier=parsed_tier, size=spec.size, capacity=capacity)
    parsed_preset = parse_preset(preset)
    placement = None
    if host is not None:
        try:
            check_fit(spec, host, gpu_type=gpu_type, region=region, preset=parsed_preset)
        except ProvisioningFailed as exc:
            placement = exc.message
    return Quote(
        model=spec.id,
        size=spec.size.value,
        tier=parsed_tier.value,
        capacity=capacity,
        preset=parsed_preset.value,
        gpu_type=gpu_type,
        region=region,
        minute_micros=minute,
        hour_micros=hourly_micros(parsed_tier, spec.size) * CAPACITY_TENTHS[capacity] // 10,
        placeable=placement is None,
        placement_refusal=placement,
        refusal=refusal,
    )
