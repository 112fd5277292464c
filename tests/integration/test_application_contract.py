"""One contract for the write side (the services over one store), run against SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from modelyard.adapters.eventstore.env import postgres_env_from_conninfo
from modelyard.domain.accounts.aggregate import CreditsCharged, add_credits, charge_minute
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.deployments import commands
from modelyard.domain.deployments.events import MinuteMetered
from modelyard.domain.deployments.lifecycle import State
from modelyard.domain.deployments.metering import meter_minute
from modelyard.domain.deployments.service import (
    MeterDue,
    MeterMinute,
    OnDeployment,
    ReplicaCommand,
    RequestDeployment,
)
from modelyard.domain.keys.aggregate import KeyKind, hash_secret
from modelyard.domain.keys.service import IssueKey
from modelyard.domain.services import Services
from modelyard.domain.shared.errors import (
    ConcurrencyConflict,
    DuplicateMinute,
    IllegalTransition,
    InstanceNotFound,
    InsufficientCredits,
    InvalidCapacity,
    InvalidModel,
    InvalidRequest,
)
from modelyard.domain.shared.store import Store
from modelyard.domain.webhooks.service import SubscribeWebhook

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def _sqlite_env(path: Path) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path), "CREATE_TABLE": "y"}


@pytest.fixture(params=["sqlite", "postgres"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield _sqlite_env(tmp_path / "events.sqlite3")
    else:
        yield postgres_env_from_conninfo(request.getfixturevalue("pg_dsn"))


@pytest.fixture
def store(store_env: dict[str, str]) -> Iterator[Store]:
    app = Store(env=store_env)
    yield app
    app.close()


@pytest.fixture
def services(store: Store) -> Services:
    return Services.over(store)


def _funded(services: Services, micros: int = 10_000_000) -> UUID:
    account = services.accounts.open_account(OpenAccount(name="acme", at=T0)).id
    services.accounts.add_credits(AddCredits(account_id=account, amount=micros, at=T0))
    return account


def _deploy(services: Services, account: UUID, model: str = "smollm2-135m", **fields: object) -> UUID:
    command = RequestDeployment(account_id=account, model=model, at=T0, **fields)  # type: ignore[arg-type]
    return services.deployments.request(command).id


def _on(dep: UUID, at: datetime = T0) -> OnDeployment:
    return OnDeployment(deployment_id=dep, at=at)


def _running(services: Services, dep: UUID, at: datetime = T0) -> int:
    """Every replica of the deployment serving from ``at``, and activated: billed from then."""
    for n in range(services.deployments.get(dep).capacity):
        services.deployments.start_replica(ReplicaCommand(deployment_id=dep, replica=f"r{n}", at=at))
    return services.deployments.activate(_on(dep, at))


def _meter(services: Services, dep: UUID, minute: datetime, at: datetime) -> int:
    return services.deployments.meter(MeterMinute(deployment_id=dep, minute=minute, at=at)).amount


def test_a_deployment_runs_is_metered_and_charged(services: Services) -> None:
    account = _funded(services)
    dep = _deploy(services, account, capacity=2)
    for replica in ("r0", "r1"):
        services.deployments.start_replica(
            ReplicaCommand(deployment_id=dep, replica=replica, at=T0 + timedelta(seconds=20))
        )
    services.deployments.activate(_on(dep, T0 + timedelta(seconds=30)))
    assert services.deployments.get(dep).state is State.RUNNING
    # 30 s of the first minute and the whole second minute at 1.8x of $0.15/h.
    assert _meter(services, dep, T0, T0 + timedelta(minutes=2)) == 2_250
    assert _meter(services, dep, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)) == 4_500
    assert services.accounts.get(account).balance == 10_000_000 - 6_750


def test_a_duplicate_minute_writes_nothing(services: Services, store: Store) -> None:
    account = _funded(services)
    dep = _deploy(services, account)
    _running(services, dep)
    _meter(services, dep, T0, T0 + timedelta(minutes=1))
    before = store.recorder.max_notification_id()
    with pytest.raises(DuplicateMinute):
        _meter(services, dep, T0, T0 + timedelta(minutes=5))
    assert store.recorder.max_notification_id() == before


def test_bad_requests_are_refused_and_leave_nothing(services: Services, store: Store) -> None:
    account = _funded(services, micros=100)
    before = store.recorder.max_notification_id()
    with pytest.raises(InvalidModel):
        _deploy(services, account, "gpt-17")
    with pytest.raises(InvalidCapacity):
        _deploy(services, account, capacity=3)
    with pytest.raises(InsufficientCredits):
        _deploy(services, account, "llama3.1-8b")
    assert store.recorder.max_notification_id() == before


def test_an_illegal_transition_is_an_error(services: Services) -> None:
    account = _funded(services)
    dep = _deploy(services, account)
    with pytest.raises(IllegalTransition, match="provisioning"):
        services.deployments.mark_destroyed(_on(dep))
    services.deployments.request_teardown(_on(dep))
    with pytest.raises(IllegalTransition):
        services.deployments.activate(_on(dep))


def test_two_writers_racing_on_one_aggregate_one_wins(store_env: dict[str, str]) -> None:
    first, second = Store(env=store_env), Store(env=store_env)
    try:
        writer, loser = Services.over(first), Services.over(second)
        account = writer.accounts.open_account(OpenAccount(name="race", at=T0)).id
        stale = loser.accounts.get(account)
        writer.accounts.add_credits(AddCredits(account_id=account, amount=5, at=T0))
        before = second.recorder.max_notification_id()
        with pytest.raises(ConcurrencyConflict):
            second.record(add_credits(stale, 7, T0))
        assert second.recorder.max_notification_id() == before
        assert writer.accounts.get(account).balance == 5
    finally:
        first.close()
        second.close()


def test_events_recorded_together_are_written_together_or_not_at_all(
    services: Services, store: Store
) -> None:
    # What provision relies on: one record of two aggregates' events is one transaction.
    account = _funded(services)
    stale = services.accounts.get(account)
    services.accounts.add_credits(AddCredits(account_id=account, amount=5, at=T0))
    requested, _ = commands.request_deployment(services.accounts.get(account), model="smollm2-135m", at=T0)
    before = store.recorder.max_notification_id()
    with pytest.raises(ConcurrencyConflict):
        store.record(requested, add_credits(stale, 7, T0))
    assert store.recorder.max_notification_id() == before
    with pytest.raises(InstanceNotFound):
        services.deployments.get(requested.originator_id)


def test_positions_are_the_store_s_notification_ids_and_increase(services: Services, store: Store) -> None:
    opened = services.accounts.open_account(OpenAccount(name="acme", at=T0))
    positions = [opened.position]
    positions.append(services.accounts.add_credits(AddCredits(account_id=opened.id, amount=10**7, at=T0)))
    assert positions[-1] == store.recorder.max_notification_id()
    dep = services.deployments.request(RequestDeployment(account_id=opened.id, model="smollm2-135m", at=T0))
    positions.append(dep.position)
    assert positions[-1] == store.recorder.max_notification_id()
    positions.append(_running(services, dep.id))
    metered = services.deployments.meter(
        MeterMinute(deployment_id=dep.id, minute=T0, at=T0 + timedelta(minutes=1))
    )
    positions.append(metered.position)
    assert positions[-1] == store.recorder.max_notification_id()
    assert positions == sorted(set(positions))


def test_everything_written_reads_back_from_a_fresh_store(store_env: dict[str, str]) -> None:
    first = Store(env=store_env)
    try:
        writer = Services.over(first)
        account = _funded(writer)
        dep = _deploy(writer, account, prefix="dep_")
        _running(writer, dep)
        _meter(writer, dep, T0, T0 + timedelta(minutes=1))
        key = writer.keys.issue(
            IssueKey(
                account_id=account,
                kind=KeyKind.MANAGEMENT,
                secret_hash=hash_secret("s"),
                display="…",
                at=T0,
            )
        ).id
        hook = writer.webhooks.subscribe(
            SubscribeWebhook(
                deployment_id=dep,
                url="https://hooks.example.com/x",
                events=("deployment.active",),
                at=T0,
            )
        ).id
    finally:
        first.close()
    fresh = Store(env=store_env)
    try:
        reader = Services.over(fresh)
        assert reader.accounts.get(account).balance == 10_000_000 - 2_500
        deployment = reader.deployments.get(dep)
        assert (deployment.prefix, deployment.state, deployment.last_metered) == ("dep_", State.RUNNING, T0)
        assert reader.keys.get(key).kind is KeyKind.MANAGEMENT
        assert reader.webhooks.get(hook).events == ("deployment.active",)
        with pytest.raises(InstanceNotFound):
            reader.deployments.get(account)
    finally:
        fresh.close()


def test_two_meters_racing_on_one_minute_charge_it_once(store_env: dict[str, str]) -> None:
    first, second = Store(env=store_env), Store(env=store_env)
    try:
        winner, loser = Services.over(first), Services.over(second)
        account = _funded(winner)
        dep = _deploy(winner, account)
        _running(winner, dep)
        at = T0 + timedelta(minutes=1)
        stale = loser.deployments.get(dep), loser.accounts.get(account)
        assert _meter(winner, dep, T0, at) == 2_500
        before = second.recorder.max_notification_id()
        metered = meter_minute(stale[0], T0, at)
        assert metered is not None
        version = metered.originator_version
        charges = charge_minute(
            stale[1], deployment_id=dep, minute=T0, amount=metered.amount, metered_version=version, at=at
        )
        with pytest.raises(ConcurrencyConflict):
            second.record(metered, *charges)
        with pytest.raises(DuplicateMinute):
            _meter(loser, dep, T0, at)
        assert second.recorder.max_notification_id() == before
        events = [first.mapper.to_domain_event(n) for n in first.recorder.select_notifications(1, 1_000)]
        assert sum(isinstance(e, MinuteMetered) for e in events) == 1
        assert sum(isinstance(e, CreditsCharged) for e in events) == 1
    finally:
        first.close()
        second.close()


def test_a_naive_time_is_refused_before_anything_is_written(services: Services, store: Store) -> None:
    account = _funded(services)
    before = store.recorder.max_notification_id()
    with pytest.raises(InvalidRequest, match="UTC"):
        services.accounts.add_credits(AddCredits(account_id=account, amount=5, at=T0.replace(tzinfo=None)))
    assert store.recorder.max_notification_id() == before


def test_a_meter_tick_charges_each_due_minute_once_and_a_stale_meter_s_tick_nothing(
    store_env: dict[str, str],
) -> None:
    first, second = Store(env=store_env), Store(env=store_env)
    try:
        winner, loser = Services.over(first), Services.over(second)
        account = _funded(winner)
        deps = tuple(_deploy(winner, account) for _ in range(3))
        for dep in deps:
            _running(winner, dep)
        for dep in deps:
            loser.deployments.get(dep)  # the second meter's cache now holds what is about to change
        at = T0 + timedelta(minutes=3, seconds=5)
        assert winner.deployments.meter_due(MeterDue(deployment_ids=deps, at=at)) == 9
        before = second.recorder.max_notification_id()
        assert loser.deployments.meter_due(MeterDue(deployment_ids=deps, at=at)) == 0
        assert second.recorder.max_notification_id() == before
        assert loser.accounts.get(account).balance == 10_000_000 - 9 * 2_500
        assert {loser.deployments.get(d).last_metered for d in deps} == {T0 + timedelta(minutes=2)}
        events = [first.mapper.to_domain_event(n) for n in first.recorder.select_notifications(1, 1_000)]
        metered = [(e.originator_id, e.minute) for e in events if isinstance(e, MinuteMetered)]
        charged = [(e.deployment_id, e.minute) for e in events if isinstance(e, CreditsCharged)]
        assert (
            sorted(metered)
            == sorted(charged)
            == sorted({(d, T0 + timedelta(minutes=m)) for d in deps for m in range(3)})
        )
    finally:
        first.close()
        second.close()
