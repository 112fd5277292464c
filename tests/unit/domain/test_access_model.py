"""The model of permissions, the catalog's plan gate, and the plan limits' settings."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from modelyard.adapters.engines.models import replica_spec
from modelyard.adapters.engines.vllm_args import vllm_command
from modelyard.domain.access import model as access
from modelyard.domain.accounts.aggregate import open_account, project_account
from modelyard.domain.catalog.models import CATALOG, Kind, Plan, available_to, check_plan, find_model
from modelyard.domain.catalog.plans import PLAN_LIMITS, Limits, plan_limits
from modelyard.domain.deployments.commands import request_deployment
from modelyard.domain.keys.aggregate import KeyKind, Role
from modelyard.domain.shared.errors import PlanUpgradeRequired

T0 = datetime(2026, 11, 1, tzinfo=UTC)
A, B, ORG = uuid4(), uuid4(), uuid4()
MINE, THEIRS = uuid4(), uuid4()


def caller(kind: KeyKind, account: object = A, **kw: object) -> access.Caller:
    return access.Caller(key_id="key_x", account_id=account, kind=kind, **kw)  # type: ignore[arg-type]


def test_inference_answers_alike_whether_or_not_the_deployment_exists() -> None:
    scoped = caller(KeyKind.SCOPED, grants={MINE: Role.INFERENCE})
    assert access.infer(scoped, MINE) is access.Verdict.ALLOWED
    # Not granted: forbidden, for its own account's deployments and anyone's (or none) alike.
    assert access.infer(scoped, THEIRS) is access.Verdict.FORBIDDEN
    assert access.infer(scoped, uuid4()) is access.Verdict.FORBIDDEN
    instance = caller(KeyKind.INSTANCE, deployment_id=MINE)
    assert access.infer(instance, MINE) is access.Verdict.ALLOWED
    assert access.infer(instance, THEIRS) is access.Verdict.NOT_FOUND
    for kind in (KeyKind.MANAGEMENT, KeyKind.OPERATOR):
        assert access.infer(caller(kind), MINE) is access.Verdict.WRONG_KEY


def test_managing_needs_the_owners_management_key_and_hides_the_rest() -> None:
    assert access.manage(caller(KeyKind.MANAGEMENT), A) is access.Verdict.ALLOWED
    assert access.manage(caller(KeyKind.MANAGEMENT), B) is access.Verdict.NOT_FOUND
    assert access.manage(caller(KeyKind.MANAGEMENT), None) is access.Verdict.NOT_FOUND
    for kind in (KeyKind.SCOPED, KeyKind.INSTANCE, KeyKind.OPERATOR):
        assert access.manage(caller(kind), A) is access.Verdict.WRONG_KEY


def test_an_organisation_asks_membership_then_ownership_then_the_permission() -> None:
    org = access.Org(id=ORG, members={A: frozenset({access.INVOKE}), B: frozenset({access.MANAGE})})
    member, other, outsider = (
        caller(KeyKind.MANAGEMENT),
        caller(KeyKind.MANAGEMENT, B),
        caller(KeyKind.MANAGEMENT, uuid4()),
    )
    assert access.in_org_deployment(member, org, access.INVOKE, ORG) is access.Verdict.ALLOWED
    assert access.in_org_deployment(other, org, access.INVOKE, ORG) is access.Verdict.FORBIDDEN
    assert access.in_org_deployment(member, org, access.INVOKE, A) is access.Verdict.NOT_FOUND
    assert access.in_org_deployment(member, org, access.INVOKE, None) is access.Verdict.NOT_FOUND
    assert access.in_org_deployment(outsider, org, access.INVOKE, ORG) is access.Verdict.NOT_FOUND
    assert access.in_org_deployment(member, None, access.INVOKE, ORG) is access.Verdict.NOT_FOUND
    scoped = caller(KeyKind.SCOPED)
    assert access.in_org_deployment(scoped, org, access.INVOKE, ORG) is access.Verdict.WRONG_KEY


def test_a_plan_reaches_its_tier_and_those_below_and_provisioning_above_it_is_refused() -> None:
    for plan in Plan:
        reach = {m.id for m in available_to(plan)}
        assert reach == {m.id for m in CATALOG if m.active and m.plan.rank <= plan.rank}
    qwen = find_model("qwen2.5-14b-instruct")
    with pytest.raises(PlanUpgradeRequired, match="basic"):
        check_plan(Plan.FREE, qwen)
    assert check_plan(Plan.BASIC, qwen) is qwen
    free = project_account(None, [open_account(name="f", plan="free", at=T0)])
    assert free is not None
    with pytest.raises(PlanUpgradeRequired):
        request_deployment(free, model="gemma-2-27b-it", at=T0)


def test_the_engine_is_started_with_the_catalogs_context_window() -> None:
    # Chat models: the simulated engine stands in for them (models that are not chat are
    # served for real, each with its own engine and host needs).
    for model in (m for m in CATALOG if m.kind is Kind.CHAT):
        simulated = replica_spec(model.id, engine="simulated", gguf={}, preset="balanced")
        assert simulated.context_window == model.context_window
    smol = find_model("smollm2-135m")
    cpu = replica_spec(smol.id, engine="auto", gguf={smol.id: __file__}, preset="balanced")
    assert (cpu.engine, cpu.context_window) == ("llamacpp", smol.context_window)
    command = vllm_command("llama3.1-8b", port=1, context_window=131072)
    assert command[command.index("--max-model-len") + 1] == "131072"


def test_plan_limits_take_overrides_and_refuse_nonsense() -> None:
    assert plan_limits("") == PLAN_LIMITS
    changed = plan_limits("free=20/1000")
    assert changed[Plan.FREE] == Limits(requests_per_minute=20, tokens_per_minute=1000)
    assert changed[Plan.BASIC] == PLAN_LIMITS[Plan.BASIC]
    for bad in ("gold=1/1", "free=1", "free=0/10", "free=x/y"):
        with pytest.raises(ValueError, match=r"free|gold"):
            plan_limits(bad)
