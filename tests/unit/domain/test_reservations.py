"""Credit held for live deployments, and the plans' quotas: arithmetic, and through the service."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from modelyard.domain.accounts import aggregate as accounts
from modelyard.domain.accounts.reservations import release, reserve, settle
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.billing.pricing import Tier, minute_price
from modelyard.domain.catalog.models import Plan, Size
from modelyard.domain.catalog.plans import PLAN_QUOTAS, Quota, plan_quotas
from modelyard.domain.deployments.lifecycle import State
from modelyard.domain.deployments.service import (
    MeterMinute,
    OnDeployment,
    ReplicaCommand,
    RequestDeployment,
    WithCapacity,
    WithReason,
)
from modelyard.domain.services import Services
from modelyard.domain.shared import errors
from modelyard.domain.shared.store import Store

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
M = timedelta(minutes=1)
SMALL = minute_price(tier=Tier.DEDICATED, size=Size.SMALL, capacity=1)  # 2_500
SMALL_4X = minute_price(tier=Tier.DEDICATED, size=Size.SMALL, capacity=4)  # 8_250


def _account(balance: int, plan: Plan = Plan.FREE) -> accounts.Account:
    return accounts.Account(
        id=uuid4(), version=2, created_on=T0, modified_on=T0, name="a", plan=plan, balance=balance
    )


def _fold(account: accounts.Account, *events: accounts.DomainEvent | None) -> accounts.Account:
    after = accounts.project_account(account, [e for e in events if e is not None])
    assert after is not None
    return after


# --- the arithmetic, on the aggregate ----------------------------------------------------


def test_holds_add_up_and_available_is_the_balance_less_them() -> None:
    account = _account(10_000)
    first, second = uuid4(), uuid4()
    account = _fold(account, reserve(account, deployment_id=first, amount=2_500, replicas=1, at=T0))
    account = _fold(account, reserve(account, deployment_id=second, amount=4_500, replicas=2, at=T0))
    assert (account.reserved, account.available) == (7_000, 3_000)
    # A later hold for the same deployment replaces the first; a release drops it.
    account = _fold(account, reserve(account, deployment_id=first, amount=3_000, replicas=2, at=T0))
    assert account.reserved == 7_500
    account = _fold(account, release(account, deployment_id=second, at=T0))
    assert (account.reserved, account.available, set(account.reservations)) == (3_000, 7_000, {first})
    assert release(account, deployment_id=second, at=T0) is None


def test_a_hold_needs_what_it_grows_by_to_be_available() -> None:
    account = _account(5_000)
    held = _fold(account, reserve(account, deployment_id=uuid4(), amount=2_500, replicas=1, at=T0))
    held = _fold(held, reserve(held, deployment_id=uuid4(), amount=2_500, replicas=1, at=T0))
    assert held.available == 0
    with pytest.raises(errors.InsufficientCredits, match="leaving 0"):
        reserve(held, deployment_id=uuid4(), amount=2_500, replicas=1, at=T0)
    # Growing an existing hold needs only the growth; shrinking one needs nothing.
    one = next(iter(held.reservations))
    with pytest.raises(errors.InsufficientCredits, match="needs 1 micro-dollars"):
        reserve(held, deployment_id=one, amount=2_501, replicas=1, at=T0)
    smaller = reserve(held, deployment_id=one, amount=1_000, replicas=1, at=T0)
    assert _fold(held, smaller).available == 1_500


def test_a_first_hold_needs_a_positive_available_balance() -> None:
    with pytest.raises(errors.InsufficientCredits):
        reserve(_account(0), deployment_id=uuid4(), amount=0, replicas=1, at=T0)


def test_settling_never_checks_and_never_creates_a_hold() -> None:
    account = _account(3_000)
    dep = uuid4()
    assert settle(account, deployment_id=dep, amount=9_000, replicas=8, at=T0) is None
    account = _fold(account, reserve(account, deployment_id=dep, amount=3_000, replicas=2, at=T0))
    assert settle(account, deployment_id=dep, amount=3_000, replicas=2, at=T0) is None
    shrunk = settle(account, deployment_id=dep, amount=2_500, replicas=1, at=T0)
    assert shrunk is not None
    assert (shrunk.amount, shrunk.replicas) == (2_500, 1)


def test_quotas_bound_live_deployments_and_their_replicas() -> None:
    quotas = {**PLAN_QUOTAS, Plan.FREE: Quota(deployments=2, replicas=3)}
    account = _account(10**9)
    first = uuid4()
    account = _fold(
        account, reserve(account, deployment_id=first, amount=1, replicas=2, at=T0, quotas=quotas)
    )
    with pytest.raises(errors.QuotaExceeded, match="at most 3 replicas") as caught:
        reserve(account, deployment_id=uuid4(), amount=1, replicas=2, at=T0, quotas=quotas)
    assert caught.value.code == "QUOTA_EXCEEDED"
    account = _fold(
        account, reserve(account, deployment_id=uuid4(), amount=1, replicas=1, at=T0, quotas=quotas)
    )
    with pytest.raises(errors.QuotaExceeded, match="at most 2 deployments"):
        reserve(account, deployment_id=uuid4(), amount=1, replicas=1, at=T0, quotas=quotas)
    with pytest.raises(errors.QuotaExceeded, match="replicas"):
        reserve(account, deployment_id=first, amount=1, replicas=3, at=T0, quotas=quotas)
    # Shrinking is always allowed, even over a quota lowered since.
    lowered = {**quotas, Plan.FREE: Quota(deployments=2, replicas=1)}
    assert reserve(account, deployment_id=first, amount=1, replicas=1, at=T0, quotas=lowered) is not None


def test_the_plans_quotas_grow_with_the_plan_and_an_operator_can_override_them() -> None:
    ordered = [PLAN_QUOTAS[p] for p in (Plan.FREE, Plan.BASIC, Plan.PROFESSIONAL, Plan.ENTERPRISE)]
    assert ordered == sorted(ordered, key=lambda q: (q.deployments, q.replicas))
    quotas = plan_quotas(" free=1/2, enterprise=1000/8000 ")
    assert quotas[Plan.FREE] == Quota(deployments=1, replicas=2)
    assert quotas[Plan.ENTERPRISE] == Quota(deployments=1000, replicas=8000)
    assert quotas[Plan.BASIC] == PLAN_QUOTAS[Plan.BASIC]
    assert plan_quotas("") == PLAN_QUOTAS
    for bad in ("gold=1/2", "free=1", "free=a/b", "free=-1/2"):
        with pytest.raises(ValueError, match=r"free|gold"):
            plan_quotas(bad)


def test_an_account_is_exhausted_once_a_charge_leaves_less_than_its_holds() -> None:
    account = _account(6_000)
    dep = uuid4()
    account = _fold(account, reserve(account, deployment_id=dep, amount=2_500, replicas=1, at=T0))
    first = accounts.charge_minute(
        account, deployment_id=dep, minute=T0, amount=2_500, metered_version=3, at=T0
    )
    assert [type(e) for e in first] == [accounts.CreditsCharged]  # 3_500 left covers the next minute
    account = _fold(account, *first)
    second = accounts.charge_minute(
        account, deployment_id=dep, minute=T0 + M, amount=2_500, metered_version=4, at=T0
    )
    assert [type(e) for e in second] == [accounts.CreditsCharged, accounts.CreditsExhausted]


# --- through the service -----------------------------------------------------------------


@pytest.fixture
def store() -> Iterator[Store]:
    app = Store(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


def _funded(services: Services, micros: int, plan: str = "free") -> UUID:
    account = services.accounts.open_account(OpenAccount(name="acme", plan=plan, at=T0)).id
    services.accounts.add_credits(AddCredits(account_id=account, amount=micros, at=T0))
    return account


def _deploy(services: Services, account: UUID, **fields: object) -> UUID:
    command = RequestDeployment(account_id=account, model="smollm2-135m", at=T0, **fields)  # type: ignore[arg-type]
    return services.deployments.request(command).id


def _on(dep: UUID, at: datetime = T0) -> OnDeployment:
    return OnDeployment(deployment_id=dep, at=at)


def test_credit_for_two_admits_two_and_an_ended_one_makes_room(store: Store) -> None:
    services = Services.over(store)
    account = _funded(services, 2 * SMALL)
    first, second = _deploy(services, account), _deploy(services, account)
    assert services.accounts.get(account).available == 0
    before = store.recorder.max_notification_id()
    with pytest.raises(errors.InsufficientCredits, match="available credit"):
        _deploy(services, account)
    assert store.recorder.max_notification_id() == before
    services.deployments.request_teardown(_on(first))
    third = _deploy(services, account)
    services.deployments.fail_provisioning(WithReason(deployment_id=second, reason="no host", at=T0))
    assert set(services.accounts.get(account).reservations) == {third}
    services.deployments.start_replica(ReplicaCommand(deployment_id=third, replica="r0", at=T0))
    services.deployments.activate(_on(third))
    services.deployments.scale_to_zero(_on(third))
    assert services.accounts.get(account).reserved == 0
    # Waking from zero holds credit again, and is refused without it.
    _deploy(services, account)
    _deploy(services, account)
    with pytest.raises(errors.InsufficientCredits):
        services.deployments.activate(_on(third))
    assert services.deployments.get(third).state is State.SCALED_TO_ZERO


def test_scaling_holds_the_larger_price_until_it_settles(store: Store) -> None:
    services = Services.over(store)
    account = _funded(services, SMALL_4X)
    dep = _deploy(services, account)
    services.deployments.start_replica(ReplicaCommand(deployment_id=dep, replica="r0", at=T0))
    services.deployments.activate(_on(dep))
    with pytest.raises(errors.InsufficientCredits):
        services.deployments.request_scale(WithCapacity(deployment_id=dep, capacity=8, at=T0))
    assert services.deployments.get(dep).state is State.RUNNING
    services.deployments.request_scale(WithCapacity(deployment_id=dep, capacity=4, at=T0))
    held = services.accounts.get(account).reservations[dep]
    assert (held.amount, held.replicas) == (SMALL_4X, 4)
    services.deployments.finish_scale(WithCapacity(deployment_id=dep, capacity=4, at=T0))
    services.deployments.request_scale(WithCapacity(deployment_id=dep, capacity=1, at=T0))
    # Scaling down: the larger hold stays while both may run, then shrinks to what runs.
    assert services.accounts.get(account).reservations[dep].amount == SMALL_4X
    services.deployments.finish_scale(WithCapacity(deployment_id=dep, capacity=1, at=T0))
    held = services.accounts.get(account).reservations[dep]
    assert (held.amount, held.replicas) == (SMALL, 1)


def test_a_plan_s_quota_refuses_the_next_deployment_and_bigger_scales(store: Store) -> None:
    quotas = plan_quotas("free=2/5")
    services = Services.over(store, quotas)
    account = _funded(services, 10**9)
    dep = _deploy(services, account, capacity=4)
    _deploy(services, account)
    with pytest.raises(errors.QuotaExceeded, match="2 deployments"):
        _deploy(services, account)
    services.deployments.start_replica(ReplicaCommand(deployment_id=dep, replica="r0", at=T0))
    services.deployments.activate(_on(dep))
    with pytest.raises(errors.QuotaExceeded, match="5 replicas"):
        services.deployments.request_scale(WithCapacity(deployment_id=dep, capacity=8, at=T0))
    # Another plan, another quota.
    professional = _funded(services, 10**9, plan="professional")
    for _ in range(3):
        _deploy(services, professional, capacity=8)


def test_racing_provisions_on_credit_for_two_admit_two(tmp_path: Path) -> None:
    """Twenty writers, each with its own store on one SQLite file, as twenty API processes."""
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "e.sqlite3")}
    setup = Store(env={**env, "CREATE_TABLE": "y"})
    account = _funded(Services.over(setup), 2 * SMALL)
    stores = [Store(env=env) for _ in range(20)]
    go = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def provision(store: Store) -> None:
        go.wait()
        try:
            _deploy(Services.over(store), account)
            outcomes.append("admitted")
        except errors.DomainError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=provision, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert sorted(outcomes) == ["INSUFFICIENT_CREDITS"] * 18 + ["admitted"] * 2
        final = Services.over(setup).accounts.get(account)
        assert (final.reserved, final.available, len(final.reservations)) == (2 * SMALL, 0, 2)
        # Both admitted run a minute and the account stops: never more than one tick below zero.
        services = Services.over(setup)
        for dep in final.reservations:
            services.deployments.start_replica(ReplicaCommand(deployment_id=dep, replica="r", at=T0))
            services.deployments.activate(_on(dep))
            services.deployments.meter(MeterMinute(deployment_id=dep, minute=T0, at=T0 + M))
        assert services.accounts.get(account).exhausted
        assert services.accounts.get(account).balance >= -final.reserved
    finally:
        for store in (setup, *stores):
            store.close()
