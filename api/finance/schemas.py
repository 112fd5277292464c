"""Request and response shapes of the finance routes, kept apart from the domain's."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from modelyard.api.instances.schemas import ModelId

_Short = Annotated[str, msgspec.Meta(max_length=64)]


class QuoteRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/quote``: the body a provision takes (``name`` ignored), and the second
    dialect's placement fields."""

    model: ModelId
    capacity: Any = 1
    tier: _Short = "dedicated"
    name: Annotated[str, msgspec.Meta(max_length=128)] = ""
    gpu_type: _Short | None = None
    region: _Short | None = None
    preset: _Short = "balanced"
    billing: Any = msgspec.UNSET


class Hardware(msgspec.Struct, frozen=True, kw_only=True):
    """Where the deployment would run on this host, or why it cannot."""

    engine: str | None
    # The engine's arguments in force for the preset (as a deployment shows them).
    arguments: list[str]
    gpu_type: str | None
    region: str | None
    preset: str
    placeable: bool
    reason: str | None


class Quote(msgspec.Struct, frozen=True, kw_only=True):
    """What a deployment would cost, and how long the balance lasts with it running."""

    model: str
    size: str
    tier: str
    capacity: int
    hardware: Hardware
    price_per_minute_usd: str
    price_per_minute_micros: int
    price_per_hour_usd: str
    # Whether a provision would be admitted now; if not, the code and reason it would get.
    admitted: bool
    refusal: str | None
    balance_available_usd: str
    # Every live deployment's price per minute, and this one's on top.
    running_per_minute_usd: str
    total_per_minute_usd: str
    # Whole minutes the available balance pays for at the total rate.
    lasts_minutes: int


class QuoteAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """``{"success": true, "data": {quote…}}``."""

    success: bool = True
    data: Quote


class Reconciliation(msgspec.Struct, frozen=True, kw_only=True):
    """One deployment's period: served, billed, used; ``flagged`` beyond rounding."""

    deployment_id: str
    model: str
    since: str
    until: str
    replica_seconds: float
    minutes_billed: int
    billed_usd: str
    served_usd: str
    difference_micros: int
    tolerance_micros: int
    requests: int
    prompt_tokens: int
    completion_tokens: int
    flagged: bool


class ReconciliationData(msgspec.Struct, frozen=True, kw_only=True):
    """The account's deployments reconciled, and how many were flagged."""

    account_id: str
    since: str
    until: str
    deployments: list[Reconciliation]
    flagged: int


class ReconciliationAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """``{"success": true, "data": {…}}``."""

    success: bool = True
    data: ReconciliationData
