"""The model catalog: pure data and lookups."""

from __future__ import annotations

from enum import StrEnum

import msgspec

from modelyard.domain.shared.errors import InvalidModel, ModelNotFound, PlanUpgradeRequired


class Size(StrEnum):
    """Price class of a model (FEATURES D2)."""

    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"
    XL = "xl"


class Plan(StrEnum):
    """Account plans, in ascending order of access."""

    FREE = "free"
    BASIC = "basic"
    PROFESSIONAL = "professional"
    ENTERPRISE = "enterprise"

    @property
    def rank(self) -> int:
        """Position in the plan ladder; a plan reaches every model at or below its rank."""
        return list(Plan).index(self)


class Kind(StrEnum):
    """What a model does."""

    CHAT = "chat"
    EMBEDDING = "embedding"
    TRANSCRIPTION = "transcription"
    SPEECH = "speech"


class ModelSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One catalog entry."""

    id: str
    name: str
    size: Size
    parameters_b: float
    weights_gib: float
    context_window: int
    plan: Plan
    kind: Kind = Kind.CHAT
    # Served on the CPU: through llama.cpp (a GGUF the platform carries), or, for a model that
    # is not chat, by the CPU engine of its kind (adapters/engines/media_backends.py).
    cpu: bool = False
    dimensions: int | None = None
    active: bool = True


CATALOG: tuple[ModelSpec, ...] = (
    ModelSpec(
        id="smollm2-135m",
        name="SmolLM2 135M Instruct",
        size=Size.SMALL,
        parameters_b=0.135,
        weights_gib=0.3,
        # What its llama.cpp replicas are started with (n_ctx): the catalog says what serves.
        context_window=2048,
        plan=Plan.FREE,
        cpu=True,
    ),
    ModelSpec(
        id="llama3.1-8b",
        name="Llama 3.1 8B Instruct",
        size=Size.SMALL,
        parameters_b=8.0,
        weights_gib=16.0,
        context_window=131072,
        plan=Plan.FREE,
    ),
    ModelSpec(
        id="llama-3.3-8b-instruct",
        name="Llama 3.3 8B Instruct",
        size=Size.SMALL,
        parameters_b=8.0,
        weights_gib=16.0,
        context_window=131072,
        plan=Plan.FREE,
    ),
    ModelSpec(
        id="qwen2.5-14b-instruct",
        name="Qwen 2.5 14B Instruct",
        size=Size.MEDIUM,
        parameters_b=14.8,
        weights_gib=30.0,
        context_window=131072,
        plan=Plan.BASIC,
    ),
    ModelSpec(
        id="gemma-2-27b-it",
        name="Gemma 2 27B",
        size=Size.MEDIUM,
        parameters_b=27.2,
        weights_gib=55.0,
        context_window=8192,
        plan=Plan.BASIC,
    ),
    ModelSpec(
        id="llama-3.3-70b-instruct",
        name="Llama 3.3 70B Instruct",
        size=Size.LARGE,
        parameters_b=70.6,
        weights_gib=142.0,
        context_window=131072,
        plan=Plan.FREE,
    ),
    ModelSpec(
        id="deepseek-coder-v2-lite",
        name="DeepSeek Coder V2 Lite",
        size=Size.MEDIUM,
        parameters_b=15.7,
        weights_gib=32.0,
        context_window=131072,
        plan=Plan.PROFESSIONAL,
    ),
    ModelSpec(
        id="llama-4-maverick",
        name="Llama 4 Maverick",
        size=Size.XL,
        parameters_b=400.0,
        weights_gib=800.0,
        context_window=1048576,
        plan=Plan.FREE,
    ),
    ModelSpec(
        id="deepseek-r1",
        name="DeepSeek R1",
        size=Size.XL,
        parameters_b=671.0,
        weights_gib=1340.0,
        context_window=131072,
        plan=Plan.ENTERPRISE,
    ),
    ModelSpec(
        id="all-minilm-l6-v2",
        name="all-MiniLM-L6-v2",
        size=Size.SMALL,
        parameters_b=0.023,
        weights_gib=0.1,
        context_window=512,
        plan=Plan.FREE,
        kind=Kind.EMBEDDING,
        dimensions=384,
        cpu=True,
    ),
    ModelSpec(
        id="bge-m3",
        name="BGE M3",
        size=Size.SMALL,
        parameters_b=0.568,
        weights_gib=1.1,
        context_window=8192,
        plan=Plan.BASIC,
        kind=Kind.EMBEDDING,
        dimensions=1024,
    ),
    # The small Whisper model and the speech engine a CPU host serves itself; the second
    # document's larger audio models are hosted elsewhere.
    ModelSpec(
        id="whisper-tiny-en",
        name="Whisper tiny.en",
        size=Size.SMALL,
        parameters_b=0.039,
        weights_gib=0.08,
        context_window=448,
        plan=Plan.FREE,
        kind=Kind.TRANSCRIPTION,
        cpu=True,
    ),
    ModelSpec(
        id="espeak-ng",
        name="eSpeak NG text to speech",
        size=Size.SMALL,
        parameters_b=0.0,
        weights_gib=0.01,
        context_window=4096,
        plan=Plan.FREE,
        kind=Kind.SPEECH,
        cpu=True,
    ),
)

_BY_ID = {model.id: model for model in CATALOG}


def find_model(model_id: str) -> ModelSpec:
    """The catalog entry for ``model_id``; unknown or inactive -> MODEL_NOT_FOUND."""
    model = _BY_ID.get(model_id)
    if model is None or not model.active:
        raise ModelNotFound(f"Model {model_id!r} does not exist or is inactive; GET /v1/models lists them.")
    return model


def deployable_model(model_id: str) -> ModelSpec:
    """The entry a provision request names; unknown or inactive -> INVALID_MODEL."""
    try:
        return find_model(model_id)
    except ModelNotFound as exc:
        raise InvalidModel(exc.message) from None


def available_to(plan: Plan) -> tuple[ModelSpec, ...]:
    """The active models ``plan`` may use."""
    return tuple(m for m in CATALOG if m.active and m.plan.rank <= plan.rank)


def check_plan(plan: Plan, model: ModelSpec) -> ModelSpec:
    """The model if ``plan`` reaches it; a model above the plan -> PLAN_UPGRADE_REQUIRED."""
    if model.plan.rank > plan.rank:
        raise PlanUpgradeRequired(
            f"{model.id} needs the {model.plan.value} plan or above; this account is on {plan.value}. "
            "GET /api/v1/public/models/available lists what it may use."
        )
    return model
