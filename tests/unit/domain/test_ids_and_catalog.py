"""Public ids, the catalog's lookups, hardware fit, plans, and the error table."""

from __future__ import annotations

from uuid import uuid4

import pytest

from modelyard.domain.catalog.hardware import (
    GPU_TYPES,
    REGIONS,
    Preset,
    check_gpu_fit,
    check_region,
    parse_preset,
)
from modelyard.domain.catalog.models import (
    CATALOG,
    Kind,
    Plan,
    Size,
    available_to,
    deployable_model,
    find_model,
)
from modelyard.domain.catalog.plans import PLAN_LIMITS
from modelyard.domain.shared import errors, ids


@pytest.mark.parametrize("prefix", [ids.INSTANCE, ids.DEPLOYMENT, ids.ACCOUNT, ids.KEY, ids.WEBHOOK])
def test_a_public_id_parses_back_to_its_uuid(prefix: str) -> None:
    uuid = uuid4()
    text = ids.public_id(prefix, uuid)
    assert text == prefix + uuid.hex
    assert len(text) - len(prefix) == 32
    assert ids.parse_id(text, prefix) == uuid


@pytest.mark.parametrize(
    ("prefix", "error"),
    [
        (ids.INSTANCE, errors.InstanceNotFound),
        (ids.ACCOUNT, errors.AccountNotFound),
        (ids.KEY, errors.KeyNotFound),
        (ids.WEBHOOK, errors.WebhookNotFound),
    ],
)
@pytest.mark.parametrize("text", ["", "inst_", "acct_xyz", "key_" + "g" * 32, "wh_" + "0" * 31, "nope"])
def test_a_malformed_id_is_not_found_of_its_kind(
    prefix: str, error: type[errors.DomainError], text: str
) -> None:
    with pytest.raises(error, match="No ") as caught:
        ids.parse_id(text, prefix)
    assert caught.value.code.endswith("_NOT_FOUND")


def test_either_dialects_deployment_id_names_one_aggregate() -> None:
    uuid = uuid4()
    assert ids.parse_deployment_id("inst_" + uuid.hex) == uuid
    assert ids.parse_deployment_id("dep_" + uuid.hex) == uuid
    with pytest.raises(errors.InstanceNotFound):
        ids.parse_deployment_id("acct_" + uuid.hex)


def test_the_catalog_has_every_size_class_and_the_embedding_models() -> None:
    assert {m.size for m in CATALOG} == set(Size)
    assert find_model("smollm2-135m").cpu
    assert find_model("llama3.1-8b").size is Size.SMALL
    assert find_model("llama-3.3-70b-instruct").size is Size.LARGE
    assert (find_model("all-minilm-l6-v2").kind, find_model("all-minilm-l6-v2").dimensions) == (
        Kind.EMBEDDING,
        384,
    )
    assert find_model("bge-m3").dimensions == 1024
    assert len({m.id for m in CATALOG}) == len(CATALOG)


def test_an_unknown_model_is_not_found_when_read_and_invalid_when_deployed() -> None:
    with pytest.raises(errors.ModelNotFound) as read:
        find_model("gpt-17")
    assert read.value.code == "MODEL_NOT_FOUND"
    with pytest.raises(errors.InvalidModel) as deployed:
        deployable_model("gpt-17")
    assert deployed.value.code == "INVALID_MODEL"


def test_each_plan_reaches_its_models_and_every_cheaper_plans() -> None:
    counts = [len(available_to(plan)) for plan in Plan]
    assert counts == sorted(counts)
    assert available_to(Plan.ENTERPRISE) == tuple(m for m in CATALOG if m.active)
    assert all(m.plan is Plan.FREE for m in available_to(Plan.FREE))
    assert find_model("deepseek-r1") not in available_to(Plan.PROFESSIONAL)


def test_plan_limits_follow_the_document() -> None:
    assert set(PLAN_LIMITS) == set(Plan)
    shown = [(PLAN_LIMITS[p].requests_per_minute, PLAN_LIMITS[p].tokens_per_minute) for p in Plan]
    assert shown[:3] == [(10, 50_000), (60, 200_000), (300, 1_000_000)]
    assert shown[3][0] > shown[2][0]


def test_gpu_types_regions_and_presets() -> None:
    assert {g: GPU_TYPES[g].vram_gib for g in GPU_TYPES} == {
        "h100": 80,
        "mi300x": 192,
        "mi300x_8": 1536,
        "mi325x": 256,
        "mi325x_8": 2048,
    }
    assert REGIONS == ("atl1", "nyc2", "tor1", "ric1")
    assert check_region("tor1") == "tor1"
    with pytest.raises(errors.InvalidRequest, match="region"):
        check_region("mars1")
    assert [parse_preset(p.value) for p in Preset] == list(Preset)
    with pytest.raises(errors.InvalidRequest, match="preset"):
        parse_preset("turbo")


def test_a_model_too_large_for_the_gpu_is_refused_and_int8_halves_it() -> None:
    large = find_model("llama-3.3-70b-instruct")
    with pytest.raises(errors.InvalidRequest, match="h100 has 80 GiB"):
        check_gpu_fit(large, "h100", Preset.BALANCED)
    assert check_gpu_fit(large, "mi300x", Preset.BALANCED).id == "mi300x"
    xl = find_model("deepseek-r1")  # 1340 GiB of weights, x1.2 headroom
    with pytest.raises(errors.InvalidRequest, match="mi300x_8 has 1536 GiB"):
        check_gpu_fit(xl, "mi300x_8", Preset.SPEED)
    assert check_gpu_fit(xl, "mi300x_8", Preset.COST).id == "mi300x_8"
    with pytest.raises(errors.InvalidRequest, match="gpu_type"):
        check_gpu_fit(xl, "a100", Preset.COST)


def test_every_domain_error_has_its_documented_code_and_no_http_status() -> None:
    table = {
        errors.InvalidCapacity: "INVALID_CAPACITY",
        errors.InvalidModel: "INVALID_MODEL",
        errors.ModelNotFound: "MODEL_NOT_FOUND",
        errors.InstanceNotFound: "INSTANCE_NOT_FOUND",
        errors.InstanceNotRunning: "INSTANCE_NOT_RUNNING",
        errors.InsufficientCredits: "INSUFFICIENT_CREDITS",
        errors.InvalidBillingMode: "INVALID_BILLING_MODE",
        errors.ProvisioningFailed: "PROVISIONING_FAILED",
        errors.IllegalTransition: "ILLEGAL_TRANSITION",
        errors.DuplicateMinute: "DUPLICATE_MINUTE",
        errors.InvalidAmount: "INVALID_AMOUNT",
        errors.AccountNotFound: "ACCOUNT_NOT_FOUND",
        errors.InvalidRequest: "INVALID_REQUEST",
        errors.WebhookNotFound: "WEBHOOK_NOT_FOUND",
        errors.KeyNotFound: "KEY_NOT_FOUND",
        errors.ConcurrencyConflict: "CONFLICT",
        errors.QuotaExceeded: "QUOTA_EXCEEDED",
        errors.PlanUpgradeRequired: "PLAN_UPGRADE_REQUIRED",
        errors.OrgNotFound: "ORG_NOT_FOUND",
    }
    for cls, code in table.items():
        error = cls("why it failed")
        assert isinstance(error, errors.DomainError)
        assert isinstance(error, errors.ModelyardError)
        assert (error.code, error.message, str(error)) == (code, "why it failed", "why it failed")
        # HTTP is the edge's business: api/errors.py maps codes to statuses.
        assert not hasattr(error, "status")
    assert set(table) == _subclasses(errors.DomainError)


def _subclasses(cls: type[errors.DomainError]) -> set[type[errors.DomainError]]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found
