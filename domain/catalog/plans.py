"""Per-plan limits: requests and tokens per minute per key, and live deployments and replicas
per account (the quotas)."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from modelyard.domain.catalog.models import Plan


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """What one key of a plan may do per minute."""

    requests_per_minute: int
    tokens_per_minute: int


# Enterprise is "custom" in the document; until an operator sets one, it gets the first
# document's flat 1,000 requests/min per key.
PLAN_LIMITS: dict[Plan, Limits] = {
    Plan.FREE: Limits(requests_per_minute=10, tokens_per_minute=50_000),
    Plan.BASIC: Limits(requests_per_minute=60, tokens_per_minute=200_000),
    Plan.PROFESSIONAL: Limits(requests_per_minute=300, tokens_per_minute=1_000_000),
    Plan.ENTERPRISE: Limits(requests_per_minute=1_000, tokens_per_minute=10_000_000),
}


class Quota(msgspec.Struct, frozen=True, kw_only=True):
    """How much one account of a plan may run at once: live deployments, and their replicas.

    A live deployment is one holding credit (provisioning, running, scaling, degraded);
    its replicas are its capacity (the larger of the two while it scales).
    """

    deployments: int
    replicas: int


# Neither document sets these; they bound what one account can start (nine provisions
# once started thirty replica processes). An operator overrides them with MODELYARD_QUOTAS.
PLAN_QUOTAS: dict[Plan, Quota] = {
    Plan.FREE: Quota(deployments=5, replicas=10),
    Plan.BASIC: Quota(deployments=10, replicas=32),
    Plan.PROFESSIONAL: Quota(deployments=50, replicas=200),
    Plan.ENTERPRISE: Quota(deployments=200, replicas=800),
}


def plan_quotas(text: str, defaults: Mapping[Plan, Quota] = PLAN_QUOTAS) -> dict[Plan, Quota]:
    """The quotas with ``text``'s overrides: ``plan=deployments/replicas`` separated by commas.

    ``"free=2/4,basic=20/64"`` changes those two plans and keeps the others; empty keeps
    all. A malformed entry raises ``ValueError`` saying which.
    """
    quotas = dict(defaults)
    for entry in filter(None, (part.strip() for part in text.split(","))):
        plan, _, limits = entry.partition("=")
        deployments, _, replicas = limits.partition("/")
        try:
            parsed = Plan(plan.strip())
            quota = Quota(deployments=int(deployments), replicas=int(replicas))
        except ValueError:
            raise ValueError(f"{entry!r} is not plan=deployments/replicas (e.g. free=5/10)") from None
        if quota.deployments < 0 or quota.replicas < 0:
            raise ValueError(f"{entry!r}: a quota cannot be negative")
        quotas[parsed] = quota
    return quotas


def plan_limits(text: str, defaults: Mapping[Plan, Limits] = PLAN_LIMITS) -> dict[Plan, Limits]:
    """The limits with ``text``'s overrides: ``plan=requests/tokens`` separated by commas.

    ``"free=20/100000"`` changes the free plan and keeps the others; empty keeps all. A
    malformed entry raises ``ValueError`` saying which.
    """
    limits = dict(defaults)
    for entry in filter(None, (part.strip() for part in text.split(","))):
        plan, _, pair = entry.partition("=")
        requests, _, tokens = pair.partition("/")
        try:
            parsed = Plan(plan.strip())
            limit = Limits(requests_per_minute=int(requests), tokens_per_minute=int(tokens))
        except ValueError:
            raise ValueError(f"{entry!r} is not plan=requests/tokens (e.g. free=10/50000)") from None
        if limit.requests_per_minute <= 0 or limit.tokens_per_minute <= 0:
            raise ValueError(f"{entry!r}: a limit must be positive")
        limits[parsed] = limit
    return limits
