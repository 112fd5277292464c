"""Request and response shapes of the second dialect's deployment routes.

Answers are the second document's own top-level objects (``deployment["id"]``,
``.json()["status"]``), not the first dialect's ``{"success", "data"}`` envelope. Errors on
these routes are OpenAI's shape, ``{"error": {"message", "type", "code", "param"}}``, with
the same stable codes as the first dialect: the second document's API is OpenAI-compatible
throughout, and its chat routes must answer OpenAI's shape anyway.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

from modelyard.api.instances.schemas import InstanceName, ModelId, WaitingForCapacity

Short = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class CreateDeployment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/public/deployments``. ``replicas`` is checked by the domain (1, 2, 4 or 8:
    INVALID_CAPACITY otherwise, so it is not typed here); the preset, GPU type and region by
    the catalog, and whether this cluster can place it at all (PROVISIONING_FAILED)."""

    model_id: ModelId
    name: InstanceName = ""
    gpu_type: Short | None = None
    region: Short | None = None
    replicas: Any = 1
    preset: Short = "balanced"
    tier: Short = "dedicated"


class ScalingPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PATCH …/scaling``: the fields sent replace the policy's; the others stay."""

    min_replicas: int | UnsetType = UNSET
    max_replicas: int | UnsetType = UNSET
    scale_to_zero: bool | UnsetType = UNSET
    idle_timeout_seconds: int | UnsetType = UNSET


class SlaPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PATCH …/sla``: the fields sent replace the targets (null removes one); the others stay."""

    ttft_target_ms: int | UnsetType | None = UNSET
    throughput_target_tps: int | UnsetType | None = UNSET
    concurrency_limit: int | UnsetType | None = UNSET


class Engine(msgspec.Struct, frozen=True, kw_only=True):
    """The engine that serves the deployment here and its preset's arguments in force."""

    name: str
    arguments: list[str]


class Scaling(msgspec.Struct, frozen=True, kw_only=True):
    """The autoscaling policy (FEATURES A9)."""

    min_replicas: int
    max_replicas: int
    scale_to_zero: bool
    idle_timeout_seconds: int


class SlaTargets(msgspec.Struct, frozen=True, kw_only=True):
    """The SLA targets (FEATURES E3); null means no target."""

    ttft_target_ms: int | None
    throughput_target_tps: int | None
    concurrency_limit: int | None


class Deployment(msgspec.Struct, frozen=True, kw_only=True):
    """A deployment as ``GET /api/v1/public/deployments/{id}`` shows it.

    ``replicas`` is the count asked for, ``ready_replicas`` those serving now. ``endpoint``
    takes OpenAI chat calls (``base_url`` for the ``openai`` SDK) once active; ``api_key``
    is its inference key, shown until its first use.
    """

    id: str
    object: str
    name: str
    model_id: str
    tier: str
    gpu_type: str | None
    region: str | None
    preset: str
    engine: Engine | None
    replicas: int
    ready_replicas: int
    status: str
    endpoint: str | None
    api_key: str | None
    api_key_hint: str | None
    failure_reason: str | None
    # Null unless the status is provisioning (or waking) because no node has room yet.
    waiting_for_capacity: WaitingForCapacity | None
    scaling: Scaling
    sla: SlaTargets
    price_per_hour_usd: str
    charged_usd: str
    created_at: str
    updated_at: str


class DeploymentList(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/v1/public/deployments``: the account's deployments, oldest first."""

    object: str
    deployments: list[Deployment]
    total: int


class ScalingAnswer(Scaling, frozen=True, kw_only=True):
    """The deployment's autoscaling policy and its replicas now."""

    deployment_id: str
    replicas: int
    status: str


class SlaEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One SLA breach (with the measured figure and the target) or recovery."""

    metric: str
    kind: str
    value: float | None
    target: float | None
    at: str


class SlaAnswer(SlaTargets, frozen=True, kw_only=True):
    """The targets and the breach history, oldest first."""

    deployment_id: str
    breaches: list[SlaEvent]
