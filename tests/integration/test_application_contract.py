"""One contract for the write side, run against SQLite and the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from modelyard.adapters.eventstore.env import postgres_env_from_conninfo
from modelyard.domain.accounts.aggregate import CreditsCharged, add_credits, charge_minute
from modelyard.domain.application import Yard
from modelyard.domain.deployments.events import MinuteMetered
from modelyard.domain.deployments.lifecycle import State
from modelyard.domain.deployments.metering import meter_minute
from modelyard.domain.keys.aggregate import KeyKind, hash_secret
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
def yard(store_env: dict[str, str]) -> Iterator[Yard]:
    app = Yard(env=store_env)
    yield app
    app.close()


def _funded(yard: Yard, micros: int = 10_000_000) -> UUID:
    account = yard.open_account(name="acme", at=T0)
    yard.add_credits(account, micros, at=T0)
    return account


def test_a_deployment_runs_is_metered_and_charged(yard: Yard) -> None:
    account = _funded(yard)
    dep = yard.request_deployment(account_id=account, model="smollm2-135m", capacity=2, at=T0)
    yard.mark_replica_started(dep, "r0", at=T0 + timedelta(seconds=20))
    yard.activate(dep, at=T0 + timedelta(seconds=30))
    assert yard.get_deployment(dep).state is State.RUNNING
    # 30 s of the first minute and the whole second minute at 1.8x of $0.15/h.
    assert yard.meter(dep, T0, at=T0 + timedelta(minutes=2)) == 2_250
    assert yard.meter(dep, T0 + timedelta(minutes=1), at=T0 + timedelta(minutes=2)) == 4_500
    assert yard.get_account(account).balance == 10_000_000 - 6_750


def test_a_duplicate_minute_writes_nothing(yard: Yard) -> None:
    account = _funded(yard)
    dep = yard.request_deployment(account_id=account, model="smollm2-135m", at=T0)
    yard.activate(dep, at=T0)
    yard.meter(dep, T0, at=T0 + timedelta(minutes=1))
    before = yard.recorder.max_notification_id()
    with pytest.raises(DuplicateMinute):
        yard.meter(dep, T0, at=T0 + timedelta(minutes=5))
    assert yard.recorder.max_notification_id() == before


def test_bad_requests_are_refused_and_leave_nothing(yard: Yard) -> None:
    account = _funded(yard, micros=100)
    before = yard.recorder.max_notification_id()
    with pytest.raises(InvalidModel):
        yard.request_deployment(account_id=account, model="gpt-17", at=T0)
    with pytest.raises(InvalidCapacity):
        yard.request_deployment(account_id=account, model="smollm2-135m", capacity=3, at=T0)
    with pytest.raises(InsufficientCredits):
        yard.request_deployment(account_id=account, model="llama3.1-8b", at=T0)
    assert yard.recorder.max_notification_id() == before


def test_an_illegal_transition_is_an_error(yard: Yard) -> None:
    account = _funded(yard)
    dep = yard.request_deployment(account_id=account, model="smollm2-135m", at=T0)
    with pytest.raises(IllegalTransition, match="provisioning"):
        yard.mark_destroyed(dep, at=T0)
    yard.request_teardown(dep, at=T0)
    with pytest.raises(IllegalTransition):
        yard.activate(dep, at=T0)


def test_two_writers_racing_on_one_aggregate_one_wins(store_env: dict[str, str]) -> None:
    first, second = Yard(env=store_env), Yard(env=store_env)
    try:
        account = first.open_account(name="race", at=T0)
        stale = second.get_account(account)
        first.add_credits(account, 5, at=T0)
        with pytest.raises(ConcurrencyConflict):
            second.record(add_credits(stale, 7, T0))
        assert first.get_account(account).balance == 5
    finally:
        first.close()
        second.close()


def test_everything_written_reads_back_from_a_fresh_application(store_env: dict[str, str]) -> None:
    writer = Yard(env=store_env)
    try:
        account = _funded(writer)
        dep = writer.request_deployment(account_id=account, model="smollm2-135m", prefix="dep_", at=T0)
        writer.activate(dep, at=T0)
        writer.meter(dep, T0, at=T0 + timedelta(minutes=1))
        key = writer.issue_key(
            account_id=account, kind=KeyKind.MANAGEMENT, secret_hash=hash_secret("s"), display="…", at=T0
        )
        hook = writer.subscribe_webhook(
            dep, url="https://hooks.example.com/x", events=["deployment.active"], secret="0" * 16, at=T0
        )
    finally:
        writer.close()
    reader = Yard(env=store_env)
    try:
        assert reader.get_account(account).balance == 10_000_000 - 2_500
        deployment = reader.get_deployment(dep)
        assert (deployment.prefix, deployment.state, deployment.last_metered) == ("dep_", State.RUNNING, T0)
        assert reader.get_key(key).kind is KeyKind.MANAGEMENT
        assert reader.get_webhook(hook).events == ("deployment.active",)
        with pytest.raises(InstanceNotFound):
            reader.get_deployment(account)
    finally:
        reader.close()


def test_two_meters_racing_on_one_minute_charge_it_once(store_env: dict[str, str]) -> None:
    first, second = Yard(env=store_env), Yard(env=store_env)
    try:
        account = _funded(first)
        dep = first.request_deployment(account_id=account, model="smollm2-135m", at=T0)
        first.activate(dep, at=T0)
        at = T0 + timedelta(minutes=1)
        stale = second.get_deployment(dep), second.get_account(account)
        assert first.meter(dep, T0, at=at) == 2_500
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
            second.meter(dep, T0, at=at)
        assert second.recorder.max_notification_id() == before
        events = [first.mapper.to_domain_event(n) for n in first.recorder.select_notifications(1, 1_000)]
        assert sum(isinstance(e, MinuteMetered) for e in events) == 1
        assert sum(isinstance(e, CreditsCharged) for e in events) == 1
    finally:
        first.close()
        second.close()


def test_a_naive_time_is_refused_before_anything_is_written(yard: Yard) -> None:
    account = _funded(yard)
    before = yard.recorder.max_notification_id()
    with pytest.raises(InvalidRequest, match="UTC"):
        yard.add_credits(account, 5, at=T0.replace(tzinfo=None))
    assert yard.recorder.max_notification_id() == before
