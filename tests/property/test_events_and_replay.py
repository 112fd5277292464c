"""Every event encodes and decodes to itself; replaying random histories gives identical views."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelyard.adapters.eventlog.sources import NotificationLogSource
from modelyard.adapters.views.db import SqliteViews
from modelyard.domain.accounts import aggregate as accounts
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.deployments import events as deployment_events
from modelyard.domain.deployments.service import (
    MeterMinute,
    OnDeployment,
    ReplicaCommand,
    RequestDeployment,
    WithCapacity,
)
from modelyard.domain.keys import aggregate as keys
from modelyard.domain.services import Services
from modelyard.domain.shared.errors import DomainError
from modelyard.domain.shared.events import DomainEvent
from modelyard.domain.shared.mapper import MsgspecMapper, NullTranscoder
from modelyard.domain.shared.store import Store
from modelyard.domain.usage import events as usage_events
from modelyard.domain.webhooks import aggregate as webhooks
from modelyard.projections.common import account_ref
from modelyard.projections.registry import all_projections
from modelyard.workers.projection_runner import ProjectionRunner


def _event_classes() -> list[type[DomainEvent]]:
    modules = (deployment_events, accounts, keys, webhooks, usage_events)
    found = {
        cls
        for module in modules
        for cls in vars(module).values()
        if isinstance(cls, type) and issubclass(cls, DomainEvent) and cls is not DomainEvent
    }
    return sorted(found, key=lambda c: c.__name__)


aware = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
st.register_type_strategy(datetime, aware)
# Stored events are JSON: the domain refuses infinities and NaN before they reach an event.
st.register_type_strategy(float, st.floats(allow_nan=False, allow_infinity=False))


# Not a timing test: on a loaded machine generating some events' values is slow.
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_event_classes()).flatmap(st.from_type))
def test_every_event_round_trips_through_the_mapper(event: DomainEvent) -> None:
    mapper = MsgspecMapper(transcoder=NullTranscoder())
    stored = mapper.to_stored_event(event)
    assert mapper.to_domain_event(stored) == event
    assert msgspec.json.decode(stored.state, type=type(event)) == event


def test_the_event_list_covers_the_domain() -> None:
    names = {cls.__name__ for cls in _event_classes()}
    expected = {"DeploymentRequested", "MinuteMetered", "CreditsCharged", "KeyIssued", "WebhookSubscribed"}
    assert expected | {"UsageRecorded"} <= names


T0 = datetime(2026, 3, 1, tzinfo=UTC)
operations = st.lists(
    st.tuples(
        st.sampled_from(["credit", "deploy", "activate", "scale", "teardown", "meter", "open"]),
        st.integers(0, 3),
        st.integers(1, 400),
    ),
    max_size=30,
)


def _play(services: Services, ops: list[tuple[str, int, int]]) -> list[Any]:
    accounts_: list[Any] = [services.accounts.open_account(OpenAccount(name="first", at=T0)).id]
    deployments: list[Any] = []
    now = T0
    for name, pick, amount in ops:
        now += timedelta(seconds=amount)
        try:
            if name == "open":
                accounts_.append(
                    services.accounts.open_account(OpenAccount(name=f"a{len(accounts_)}", at=now)).id
                )
            elif name == "credit":
                credit = AddCredits(account_id=accounts_[pick % len(accounts_)], amount=amount * 1000, at=now)
                services.accounts.add_credits(credit)
            elif name == "deploy":
                account = accounts_[pick % len(accounts_)]
                request = RequestDeployment(account_id=account, model="smollm2-135m", at=now)
                deployments.append(services.deployments.request(request).id)
            elif deployments:
                _step(services, name, deployments[pick % len(deployments)], now)
        except DomainError:
            pass  # refused commands write nothing; the history goes on
    return accounts_


def _step(services: Services, name: str, dep: Any, now: datetime) -> None:
    deployments = services.deployments
    if name == "activate":
        # A replica serves first, so the minutes that follow are billed.
        deployments.start_replica(ReplicaCommand(deployment_id=dep, replica=f"r{now.timestamp()}", at=now))
        deployments.activate(OnDeployment(deployment_id=dep, at=now))
    elif name == "scale":
        deployments.request_scale(WithCapacity(deployment_id=dep, capacity=2, at=now))
        deployments.finish_scale(WithCapacity(deployment_id=dep, capacity=2, at=now + timedelta(seconds=3)))
    elif name == "teardown":
        deployments.request_teardown(OnDeployment(deployment_id=dep, at=now))
    elif name == "meter":
        from modelyard.domain.deployments.metering import due_minutes

        for minute in due_minutes(deployments.get(dep), now):
            deployments.meter(MeterMinute(deployment_id=dep, minute=minute, at=now))


def _dump(views: SqliteViews) -> dict[str, list[tuple[Any, ...]]]:
    with views.transaction() as tx:
        return {
            t: sorted(tx.execute(f"SELECT * FROM {t}"), key=repr)  # noqa: S608
            for p in all_projections()
            for t in p.tables
        }


@settings(max_examples=25, deadline=None)
@given(operations, st.integers(1, 7))
def test_replaying_a_random_history_gives_identical_views(
    ops: list[tuple[str, int, int]], batch: int
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        store = Store(
            env={
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(root / "e.sqlite3"),
                "CREATE_TABLE": "y",
            }
        )
        services = Services.over(store)
        opened = _play(services, ops)
        small, whole = SqliteViews(root / "a.sqlite3"), SqliteViews(root / "b.sqlite3")
        in_batches = ProjectionRunner(small, NotificationLogSource(store.recorder), all_projections())
        while in_batches.run_once(max_records=batch, timeout_s=0):
            pass
        ProjectionRunner(whole, NotificationLogSource(store.recorder), all_projections()).run_until_idle()
        assert _dump(small) == _dump(whole)
        with small.transaction() as tx:
            for account_id, balance in tx.execute("SELECT account_id, balance FROM balances"):
                ledger = tx.execute(
                    "SELECT balance_after FROM ledger WHERE account_id = %s ORDER BY position DESC LIMIT 1",
                    [account_id],
                )
                assert balance == (ledger[0][0] if ledger else 0)
            # The view says what the aggregates say: balance, and exhaustion (which a top-up ends).
            for account_id in opened:
                account = services.accounts.get(account_id)
                row = tx.execute(
                    "SELECT balance, exhausted FROM balances WHERE account_id = %s", [account_ref(account_id)]
                )
                assert row == [(account.balance, int(account.exhausted))]
        small.close()
        whole.close()
        store.close()
