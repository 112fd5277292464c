"""The event pipeline end to end: store -> (relay -> Kafka) -> runner -> views.

Each event reaches the views exactly once whatever is re-delivered, views rebuilt from the
first event equal the live ones, and the Kafka path yields the same rows as the store path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from modelyard.adapters.eventlog.envelope import EventEnvelope
from modelyard.adapters.eventlog.relay import Relay, ensure_topic, make_producer
from modelyard.adapters.eventlog.sources import KafkaSource, NotificationLogSource
from modelyard.adapters.eventstore.env import postgres_env_from_conninfo
from modelyard.adapters.views.db import PostgresViews, SqliteViews, ViewDatabase
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.deployments.service import (
    MeterMinute,
    OnDeployment,
    ReplicaCommand,
    RequestDeployment,
    WithCapacity,
)
from modelyard.domain.services import Services
from modelyard.domain.shared.store import Store
from modelyard.projections.balances.projection import BalancesProjection
from modelyard.projections.base import OneByOne, Projection, Tx
from modelyard.projections.deployments.projection import DeploymentsProjection
from modelyard.projections.keys.projection import KeysProjection
from modelyard.workers.projection_runner import ProjectionRunner

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def _projections() -> list[Projection]:
    return [DeploymentsProjection(), BalancesProjection(), KeysProjection()]


def _history(store: Store, accounts: int = 3) -> None:
    """A few accounts, credits, deployments that run, scale, get metered and torn down."""
    services = Services.over(store)
    deployments = services.deployments
    for n in range(accounts):
        account = services.accounts.open_account(OpenAccount(name=f"acct{n}", at=T0)).id
        services.accounts.add_credits(AddCredits(account_id=account, amount=5_000_000 + n, at=T0))
        dep = deployments.request(
            RequestDeployment(account_id=account, model="smollm2-135m", capacity=1, at=T0)
        ).id
        deployments.start_replica(
            ReplicaCommand(deployment_id=dep, replica="r0", at=T0 + timedelta(seconds=10))
        )
        deployments.activate(OnDeployment(deployment_id=dep, at=T0 + timedelta(seconds=15)))
        deployments.request_scale(WithCapacity(deployment_id=dep, capacity=4, at=T0 + timedelta(seconds=70)))
        deployments.finish_scale(WithCapacity(deployment_id=dep, capacity=4, at=T0 + timedelta(seconds=95)))
        for minute in range(3):
            deployments.meter(
                MeterMinute(
                    deployment_id=dep, minute=T0 + timedelta(minutes=minute), at=T0 + timedelta(minutes=3)
                )
            )
        # The teardown charges the last, partial minute itself (destroy settles at once).
        deployments.request_teardown(OnDeployment(deployment_id=dep, at=T0 + timedelta(minutes=3, seconds=7)))
        deployments.mark_destroyed(OnDeployment(deployment_id=dep, at=T0 + timedelta(minutes=3, seconds=9)))


def _dump(views: ViewDatabase, projections: Sequence[Projection]) -> dict[str, list[tuple[Any, ...]]]:
    with views.transaction() as tx:
        return {
            table: sorted(tx.execute(f"SELECT * FROM {table}"), key=repr)  # noqa: S608
            for p in projections
            for table in p.tables
        }


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Any]]:
    """A Store and a factory of fresh view databases on the same kind of database."""
    if request.param == "sqlite":
        store = Store(
            env={
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(tmp_path / "events.sqlite3"),
                "CREATE_TABLE": "y",
            }
        )
        counter = iter(range(100))
        yield store, lambda: SqliteViews(tmp_path / f"views{next(counter)}.sqlite3")
    else:
        dsn = request.getfixturevalue("pg_dsn")
        store = Store(env=postgres_env_from_conninfo(dsn))
        made: list[PostgresViews] = []

        def fresh() -> PostgresViews:
            # Views of one test share its database; each fresh one gets a schema of its own.
            import psycopg

            schema = f"v{len(made)}"
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {schema}")
            made.append(PostgresViews(f"{dsn} options=-csearch_path={schema}", max_size=2))
            return made[-1]

        yield store, fresh
        for views in made:
            views.close()
    store.close()


def test_views_fold_the_history_and_a_rebuild_gives_the_same_rows(backend: tuple[Store, Any]) -> None:
    store, fresh = backend
    _history(store)
    views = fresh()
    runner = ProjectionRunner(views, NotificationLogSource(store.recorder), _projections())
    runner.run_until_idle()
    live = _dump(views, _projections())
    assert len(live["balances"]) == 3
    assert len(live["deployments"]) == 3
    with views.transaction() as tx:
        balances = tx.execute("SELECT account_id, balance FROM balances ORDER BY name")
    for account_id, balance in balances:
        from modelyard.domain.shared.ids import ACCOUNT, parse_id

        assert balance == Services.over(store).accounts.get(parse_id(account_id, ACCOUNT)).balance
    runner.rebuild()
    ProjectionRunner(views, NotificationLogSource(store.recorder), _projections()).run_until_idle()
    assert _dump(views, _projections()) == live


def test_the_same_events_delivered_twice_leave_the_views_unchanged(backend: tuple[Store, Any]) -> None:
    store, fresh = backend
    _history(store, accounts=2)
    views = fresh()
    ProjectionRunner(views, NotificationLogSource(store.recorder), _projections()).run_until_idle()
    once = _dump(views, _projections())
    # A source that starts over from the first event: everything is delivered again.
    again = ProjectionRunner(views, NotificationLogSource(store.recorder, start_after=0), _projections())
    assert again.run_until_idle() > 0
    assert _dump(views, _projections()) == once


class _CrashOnNth(OneByOne):
    """Wraps a projection and raises on its n-th event, like a process dying mid-batch."""

    def __init__(self, inner: Projection, n: int) -> None:
        self.inner, self.n, self.seen = inner, n, 0
        self.name, self.schema, self.tables = inner.name, inner.schema, inner.tables

    def apply(self, tx: Tx, event: object, position: int) -> None:
        self.seen += 1
        if self.seen == self.n:
            raise RuntimeError("killed mid-batch")
        self.inner.apply(tx, event, position)


def test_kafka_path_gives_the_store_path_rows_and_survives_a_consumer_killed_mid_batch(
    backend: tuple[Store, Any], kafka_bootstrap: str, topic_name: str
) -> None:
    store, fresh = backend
    _history(store)
    store_views = fresh()
    ProjectionRunner(store_views, NotificationLogSource(store.recorder), _projections()).run_until_idle()

    ensure_topic(kafka_bootstrap, topic_name)
    producer = make_producer(kafka_bootstrap)
    relay = Relay(store.recorder, producer, topic_name, fresh())
    while relay.relay_once(batch=7):
        pass
    producer.close()

    kafka_views = fresh()
    group = f"views-{topic_name}"
    crashing = [_CrashOnNth(p, 5) for p in _projections()]
    doomed_source = KafkaSource(kafka_bootstrap, topic_name, group)
    doomed = ProjectionRunner(kafka_views, doomed_source, crashing)

    def run_until_killed() -> None:
        for _ in range(50):
            doomed.run_once(timeout_s=2)

    with pytest.raises(RuntimeError, match="killed"):
        run_until_killed()
    doomed_source.close()  # the dead consumer leaves; its batch was never committed

    survivor_source = KafkaSource(kafka_bootstrap, topic_name, group)
    survivor = ProjectionRunner(kafka_views, survivor_source, _projections())
    total = store.recorder.max_notification_id() or 0
    for _ in range(100):
        survivor.run_once(timeout_s=1)
        if survivor.position >= total and _dump(kafka_views, _projections()) == _dump(
            store_views, _projections()
        ):
            break
    survivor_source.close()  # a consumer left open keeps heartbeating after the broker stops
    assert _dump(kafka_views, _projections()) == _dump(store_views, _projections())


def test_a_relay_that_dies_before_recording_resends_and_nothing_counts_twice(
    backend: tuple[Store, Any], kafka_bootstrap: str, topic_name: str
) -> None:
    store, fresh = backend
    _history(store, accounts=2)
    ensure_topic(kafka_bootstrap, topic_name)
    positions = fresh()
    producer = make_producer(kafka_bootstrap)
    relay = Relay(store.recorder, producer, topic_name, positions)
    relay.relay_once(batch=10)
    # The next batch reaches Kafka but the relay "dies" before recording its position ...
    rows = store.recorder.select_notifications(start=relay.position() + 1, limit=10)
    for row in rows:
        envelope = EventEnvelope.of(row)
        producer.send(
            topic_name,
            key=str(envelope.originator_id).encode(),
            value=envelope.state,
            headers=[
                ("notification_id", str(row.id).encode()),
                ("topic", row.topic.encode()),
                ("originator_version", str(row.originator_version).encode()),
            ],
        )
    producer.flush()
    # ... so the restarted relay sends those events again, then the rest.
    restarted = Relay(store.recorder, producer, topic_name, positions)
    assert restarted.position() == 10
    while restarted.relay_once(batch=10):
        pass
    producer.close()
    assert restarted.position() == store.recorder.max_notification_id()

    views = fresh()
    source = KafkaSource(kafka_bootstrap, topic_name, f"g-{topic_name}")
    runner = ProjectionRunner(views, source, _projections())
    for _ in range(60):
        runner.run_once(timeout_s=1)
        if runner.position >= restarted.position():
            break
    source.close()
    store_views = fresh()
    ProjectionRunner(store_views, NotificationLogSource(store.recorder), _projections()).run_until_idle()
    assert _dump(views, _projections()) == _dump(store_views, _projections())
