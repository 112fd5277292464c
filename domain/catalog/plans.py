"""Per-plan rate limits (requests and tokens per minute)."""

from __future__ import annotations

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
