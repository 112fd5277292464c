"""One contract for the write side, run against SQLite and the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from modelyard.adapters.eventstore.env import postgres_env_from_conninfo
from modelyard.domain.accounts.aggregate import add_credits
from modelyard.domain.application import Yard
from modelyard.domain.deployments.lifecycle import State
from modelyard.domain.shared.errors import (
    ConcurrencyConflict,
    DuplicateMinute,
    IllegalTransition,
    InsufficientCredits,
    InvalidCapacity,
    InvalidModel,
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
