"""Request and response shapes of the first dialect, kept apart from domain events."""

from __future__ import annotations

from typing import Any

import msgspec

from modelyard.domain.shared.errors import InvalidBillingMode


class ProvisionRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/provision``. ``capacity`` is checked by the domain (INVALID_CAPACITY); a
    ``billing`` field, of any value, is refused with INVALID_BILLING_MODE."""

    model: str
    capacity: Any = 1
    tier: str = "dedicated"
    name: str = ""
    billing: Any = msgspec.UNSET

    def check_billing(self) -> None:
        """Pay-as-you-go only: any billing parameter is refused."""
        if self.billing is not msgspec.UNSET:
            raise InvalidBillingMode(
                "The billing parameter is no longer supported: modelyard is pay-as-you-go, per minute."
            )


class ScaleRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/instances/{id}/scale``."""

    capacity: Any


class Instance(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=False):
    """An instance as ``GET /v1/instances/{id}`` shows it."""

    id: str
    name: str
    model: str
    tier: str
    capacity: int
    status: str
    endpoint: str | None
    openai_base_url: str | None
    api_key: str | None
    api_key_hint: str | None
    failure_reason: str | None
    price_per_hour_usd: str
    charged_usd: str
    created_at: str
    updated_at: str
