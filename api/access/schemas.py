"""Request and response bodies of the access routes (the second dialect: bare objects)."""

from __future__ import annotations

from typing import Annotated

import msgspec

Name = Annotated[str, msgspec.Meta(max_length=200)]
Id = Annotated[str, msgspec.Meta(max_length=100)]


class Pricing(msgspec.Struct, frozen=True, kw_only=True):
    """USD per hour of one replica: dedicated, and shared (small models only)."""

    dedicated_per_hour_usd: str
    shared_per_hour_usd: str | None


class Hardware(msgspec.Struct, frozen=True, kw_only=True):
    """What serves the model on this installation, and the GPU types it fits."""

    engine: str | None
    servable_here: bool
    reason: str | None
    gpu_types: list[str]


class CatalogEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One model of the catalog."""

    id: str
    name: str
    object: str = "model"
    capabilities: list[str]
    size: str
    tier: str
    context_window: int
    parameters_b: float
    dimensions: int | None
    pricing: Pricing
    hardware: Hardware


class Catalog(msgspec.Struct, frozen=True, kw_only=True):
    """The catalog (or what a plan reaches of it)."""

    object: str = "list"
    data: list[CatalogEntry]
    plan: str | None = None


class CreateKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A new key: ``management`` (the account's own), or ``scoped`` to ``deployments`` in ``role``."""

    kind: str = "scoped"
    name: Name = ""
    deployments: Annotated[list[Id], msgspec.Meta(max_length=1000)] = []
    role: str = "inference"


class KeyInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A key as its owner sees it; ``key`` (the secret) only in the answer that created it."""

    id: str
    object: str = "api_key"
    kind: str
    name: str
    display: str
    revoked: bool
    created_at: str
    last_used_at: str | None
    deployment_id: str | None
    permissions: list[Permission]
    key: str | None = None


class Permission(msgspec.Struct, frozen=True, kw_only=True):
    """One grant: a key may reach a deployment in a role."""

    deployment_id: str
    api_key_id: str
    role: str


class KeyList(msgspec.Struct, frozen=True, kw_only=True):
    """The account's keys."""

    object: str = "list"
    data: list[KeyInfo]


class Grant(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST …/deployments/{id}/permissions``."""

    api_key_id: Id
    role: str = "inference"


class PermissionList(msgspec.Struct, frozen=True, kw_only=True):
    """The grants on one deployment."""

    object: str = "list"
    data: list[Permission]


class CreateOrg(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A new organisation."""

    name: Name


class AddMember(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A member (an existing account) with permissions."""

    account_id: Id
    permissions: Annotated[list[Annotated[str, msgspec.Meta(max_length=50)]], msgspec.Meta(max_length=10)]


class MemberInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One member."""

    account_id: str
    name: str
    permissions: list[str]


class OrgInfo(msgspec.Struct, frozen=True, kw_only=True):
    """An organisation, its members and its credit."""

    id: str
    object: str = "organization"
    name: str
    plan: str
    members: list[MemberInfo]
    balance_usd: str
    available_usd: str


class OrgList(msgspec.Struct, frozen=True, kw_only=True):
    """The organisations the caller belongs to."""

    object: str = "list"
    data: list[OrgInfo]


class OrgDeployment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Provision a deployment the organisation owns and pays for."""

    model_id: Id
    name: Name = ""
    replicas: int = 1
    tier: str = "dedicated"


class DeploymentInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A deployment as an organisation's member sees it."""

    id: str
    object: str = "deployment"
    name: str
    model_id: str
    status: str
    replicas: int
    org_id: str


class TopUp(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/public/credits``: add ``amount_usd`` (a decimal string or number) to an account."""

    account_id: Id
    amount_usd: str | int | float


class TopUpAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """What a top-up credited, and the balance after it."""

    object: str = "credit"
    account_id: str
    amount_usd: str
    balance_usd: str


class LedgerEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One credit or charge, with the event it came from."""

    at: str
    kind: str
    amount_usd: str
    balance_after_usd: str
    event_id: str
    deployment_minute: str | None
    metered_event: str | None


class Ledger(msgspec.Struct, frozen=True, kw_only=True):
    """The account's balance and every credit and charge that explains it."""

    object: str = "ledger"
    account_id: str
    plan: str
    balance_usd: str
    reserved_usd: str
    available_usd: str
    data: list[LedgerEntry]


class UsageRow(msgspec.Struct, frozen=True, kw_only=True):
    """One deployment-minute of the usage export."""

    deployment_id: str
    minute: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    charged_usd: str


class UsageExport(msgspec.Struct, frozen=True, kw_only=True):
    """The usage export in JSON."""

    object: str = "list"
    account_id: str
    data: list[UsageRow]
