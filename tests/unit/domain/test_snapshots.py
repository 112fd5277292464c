"""Snapshots: taken every few versions, read by a process that has not seen the aggregate,
and ignored (with a warning, folding the events instead) when they cannot be used."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from uuid import UUID

import msgspec
import pytest
from eventsourcing.persistence import StoredEvent

from modelyard.domain.accounts import aggregate as accounts
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.services import Services
from modelyard.domain.shared import snapshots
from modelyard.domain.shared.errors import AccountNotFound, InstanceNotFound
from modelyard.domain.shared.store import Store

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def store() -> Store:
    return Store(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, snapshot_interval=3)


def _account_with(store: Store, top_ups: int) -> UUID:
    services = Services.over(store)
    account = services.accounts.open_account(OpenAccount(name="acme", at=T0)).id
    for n in range(top_ups):
        services.accounts.add_credits(AddCredits(account_id=account, amount=n + 1, at=T0))
    return account


def _snapshot_versions(store: Store, account: UUID) -> list[int]:
    assert store.snapshots is not None
    return [s.originator_version for s in store.snapshots.recorder.select_events(account)]


def _load(store: Store, account: UUID) -> accounts.Account:
    return store.load(account, accounts.project_account, accounts.Account, AccountNotFound)


def _plant(store: Store, account: UUID, version: int, topic: str, state: bytes) -> None:
    assert store.snapshots is not None
    stored = StoredEvent(originator_id=account, originator_version=version, topic=topic, state=state)
    store.snapshots.recorder.insert_events([stored])


def test_a_snapshot_is_taken_every_interval_and_the_events_stay_the_truth(store: Store) -> None:
    account = _account_with(store, 7)  # versions 1..8
    assert _snapshot_versions(store, account) == [3, 6]
    folded = accounts.project_account(None, store.events.get(account))
    assert folded is not None
    assert folded.balance == sum(range(1, 8))
    store.forget()
    assert _load(store, account) == folded


def test_a_snapshot_of_the_current_shape_is_what_a_cold_load_starts_from(store: Store) -> None:
    account = _account_with(store, 7)
    at_7 = accounts.project_account(None, store.events.get(account, lte=7))
    assert at_7 is not None
    # A doctored snapshot shows the load starts there and folds only the tail (version 8).
    doctored = snapshots.take(msgspec.structs.replace(at_7, balance=10**9))
    _plant(store, account, 7, "modelyard.domain.shared.snapshots:Snapshot", msgspec.json.encode(doctored))
    store.forget()
    assert _load(store, account).balance == 10**9 + 7


SNAPSHOT = "modelyard.domain.shared.snapshots:Snapshot"


@pytest.mark.parametrize(
    ("topic", "changes", "says"),
    [
        (SNAPSHOT, {"shape": "an-older-shape"}, "older shape"),
        (SNAPSHOT, {"state": msgspec.Raw(b'{"id": 3}')}, "does not decode"),
        # Raw state is written as it is: this leaves the stored JSON unterminated.
        (SNAPSHOT, {"state": msgspec.Raw(b'{"id": "not a uuid"')}, "does not decode"),
        ("modelyard.domain.accounts.gone:OldSnapshot", {}, "does not decode"),
    ],
)
def test_a_snapshot_that_cannot_be_used_is_ignored_with_a_warning_and_nothing_is_lost(
    store: Store, caplog: pytest.LogCaptureFixture, topic: str, changes: dict[str, object], says: str
) -> None:
    account = _account_with(store, 7)
    folded = accounts.project_account(None, store.events.get(account))
    at_8 = accounts.project_account(None, store.events.get(account, lte=8))
    assert at_8 is not None
    snapshot = msgspec.structs.replace(snapshots.take(msgspec.structs.replace(at_8, balance=-1)), **changes)
    encoded = msgspec.json.encode(snapshot)
    _plant(store, account, 8, topic, encoded)
    store.forget()
    with caplog.at_level(logging.WARNING, logger="modelyard.domain.shared.snapshots"):
        assert _load(store, account) == folded
    assert says in caplog.text


def test_an_id_of_another_kind_is_not_found_from_the_cache_or_a_snapshot(store: Store) -> None:
    account = _account_with(store, 4)
    services = Services.over(store)
    for _ in range(2):
        with pytest.raises(InstanceNotFound):
            services.deployments.get(account)
        assert services.accounts.get(account).balance == 10
        store.forget()


def test_a_store_without_a_cache_or_snapshots_folds_everything() -> None:
    store = Store(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, cache_size=0, snapshot_interval=0)
    account = _account_with(store, 7)
    assert _snapshot_versions(store, account) == []
    assert _load(store, account).balance == sum(range(1, 8))
