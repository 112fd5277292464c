"""Request and response shapes of the first dialect, kept apart from domain events."""

from __future__ import annotations

from typing import Any

import msgspec

from modelyard.api.errors import InvalidRequest
from modelyard.domain.shared.errors import InvalidBillingMode


class ProvisionRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/provision``."""

    model: str
    capacity: Any = 1
    tier: str = "dedicated"
    name: str = ""


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


def parse_body(raw: bytes, into: type[Any]) -> Any:
    """Decode a JSON body into ``into``: a ``billing`` field is INVALID_BILLING_MODE, any other
    problem INVALID_REQUEST, each with a message that says what is wrong."""
    try:
        data = msgspec.json.decode(raw or b"null")
    except msgspec.DecodeError:
        raise InvalidRequest("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The body must be a JSON object.")
    if "billing" in data:
        raise InvalidBillingMode(
            "The billing parameter is no longer supported: modelyard is pay-as-you-go, per minute."
        )
    try:
        return msgspec.convert(data, into)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid request: {exc}.") from None
