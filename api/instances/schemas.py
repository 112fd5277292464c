"""Request and response shapes of the first dialect, kept apart from domain events."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from modelyard.domain.shared.errors import InvalidBillingMode

# A catalog id: the longest in the catalog is a few dozen characters.
ModelId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
# An instance's name: what a person would type, printable, one line.
InstanceName = Annotated[str, msgspec.Meta(max_length=128, pattern=r"^[^\x00-\x1f\x7f]*$")]


class ProvisionRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/provision``. ``capacity`` and ``tier`` are checked by the domain
    (INVALID_CAPACITY for any capacity but 1, 2, 4 or 8, even ``"4"``, so it is not typed
    here); a ``billing`` field, of any value, is refused with INVALID_BILLING_MODE. The
    body's nesting is bounded before it is decoded (``api.bodies``)."""

    model: ModelId
    capacity: Any = 1
    tier: Annotated[str, msgspec.Meta(max_length=32)] = "dedicated"
    name: InstanceName = ""
    billing: Any = msgspec.UNSET

    def check_billing(self) -> None:
        """Pay-as-you-go only: any billing parameter is refused."""
        if self.billing is not msgspec.UNSET:
            raise InvalidBillingMode(
                "The billing parameter is no longer supported: modelyard is pay-as-you-go, per minute."
            )


class ScaleRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/instances/{id}/scale``; ``capacity`` is checked by the domain (INVALID_CAPACITY)."""

    capacity: Any


class WaitingForCapacity(msgspec.Struct, frozen=True, kw_only=True):
    """Why, and since when, a provisioning (or waking) deployment waits: no node of the
    cluster has room for its replicas now. It is placed once room frees, or fails after
    ``MODELYARD_CAPACITY_WAIT_S``."""

    since: str
    reason: str


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
    # Null unless the status is provisioning (or waking) because no node has room yet.
    waiting_for_capacity: WaitingForCapacity | None
    price_per_hour_usd: str
    charged_usd: str
    created_at: str
    updated_at: str


class InstanceData(msgspec.Struct, frozen=True, kw_only=True):
    """The ``data`` of an answer about one instance."""

    instance: Instance


class InstanceAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """``{"success": true, "data": {"instance": …}}``."""

    success: bool = True
    data: InstanceData


class InstanceList(msgspec.Struct, frozen=True, kw_only=True):
    """The account's instances that are not destroyed."""

    instances: list[Instance]
    count: int


class InstanceListAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """``{"success": true, "data": {"instances": […], "count": n}}``."""

    success: bool = True
    data: InstanceList


class ModelPrices(msgspec.Struct, frozen=True, kw_only=True):
    """USD per hour at 1x; ``shared`` only for small models."""

    dedicated: str
    shared: str | None


class CatalogModel(msgspec.Struct, frozen=True, kw_only=True):
    """One model of the catalog as ``GET /v1/models`` lists it."""

    id: str
    name: str
    size: str
    kind: str
    plan: str
    context_window: int
    cpu: bool
    price_per_hour_usd: ModelPrices


class ModelList(msgspec.Struct, frozen=True, kw_only=True):
    """The catalog's active models."""

    models: list[CatalogModel]


class ModelListAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """``{"success": true, "data": {"models": […]}}``."""

    success: bool = True
    data: ModelList


class BalanceData(msgspec.Struct, frozen=True, kw_only=True):
    """The account's prepaid balance, what was credited and what was charged."""

    account_id: str
    plan: str
    balance_usd: str
    balance_micros: int
    credited_usd: str
    charged_usd: str
    # Held by live deployments (a minute each at its price), and what is left for new ones.
    reserved_usd: str = "0.000000"
    available_usd: str = "0.000000"


class BalanceAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """``{"success": true, "data": {balance…}}``."""

    success: bool = True
    data: BalanceData


class UsageRow(msgspec.Struct, frozen=True, kw_only=True):
    """Minutes metered on one instance and what they cost."""

    instance_uuid: str
    minutes: int
    charged_usd: str


class UsageData(msgspec.Struct, frozen=True, kw_only=True):
    """Charges per instance and in total."""

    account_id: str
    instances: list[UsageRow]
    charged_usd: str


class UsageAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """``{"success": true, "data": {usage…}}``."""

    success: bool = True
    data: UsageData
