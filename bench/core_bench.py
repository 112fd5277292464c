"""Throughput of the event-sourced core, each figure beside a baseline measured in the same run.

    .venv/bin/modelyard services up        # PostgreSQL and Kafka on loopback
    .venv/bin/python bench/core_bench.py   # prints the table

1. append: events saved through the accounts service (one command, one transaction each)
   vs raw psycopg inserts of the same stored rows, one transaction each;
2. relay: the relay publishing the store's events to Kafka vs a raw kafka-python producer
   sending the same messages;
3. replay: events/s rebuilding balances and ledger from the store's log (the finance
   replay's path), into PostgreSQL views and into a scratch SQLite.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from kafka import KafkaProducer

from modelyard.adapters.eventlog.relay import Relay, ensure_topic, make_producer
from modelyard.adapters.eventlog.sources import NotificationLogSource
from modelyard.adapters.eventstore.env import postgres_env_from_conninfo
from modelyard.adapters.services.kafka import LocalKafka
from modelyard.adapters.services.postgres import LocalPostgres
from modelyard.adapters.views.db import PostgresViews, SqliteViews
from modelyard.domain.accounts.service import AccountsService, AddCredits, OpenAccount
from modelyard.domain.shared.store import Store
from modelyard.projections.balances.projection import BalancesProjection
from modelyard.workers.audit import REPLAY_BATCH
from modelyard.workers.projection_runner import ProjectionRunner

ROOT = Path(__file__).resolve().parents[1] / ".services"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _database(pg: LocalPostgres) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg.conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg.conninfo.replace("dbname=modelyard", f"dbname={name}")


def bench_append(dsn: str, n: int) -> tuple[float, float, Store]:
    store = Store(env=postgres_env_from_conninfo(dsn))
    service = AccountsService(store)
    accounts = [service.open_account(OpenAccount(name="warm", at=T0)).id]
    start = time.perf_counter()
    for i in range(n):
        if i % 10 == 0:
            accounts.append(service.open_account(OpenAccount(name=f"a{i}", at=T0)).id)
        else:
            service.add_credits(AddCredits(account_id=accounts[-1], amount=1000 + i, at=T0))
    app_rate = n / (time.perf_counter() - start)
    rows = store.recorder.select_notifications(start=1, limit=n)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "CREATE TABLE raw_events (id bigserial PRIMARY KEY, originator_id uuid, originator_version int,"
            " topic text, state bytea, UNIQUE (originator_id, originator_version))"
        )
        conn.commit()
        start = time.perf_counter()
        for row in rows:
            conn.execute(
                "INSERT INTO raw_events (originator_id, originator_version, topic, state)"
                " VALUES (%s, %s, %s, %s)",
                [row.originator_id, row.originator_version, row.topic, row.state],
            )
            conn.commit()
        raw_rate = len(rows) / (time.perf_counter() - start)
    return app_rate, raw_rate, store


def bench_relay(store: Store, dsn: str, bootstrap: str) -> tuple[float, float, int]:
    topic = f"bench.{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic)
    producer = make_producer(bootstrap)
    views = PostgresViews(dsn, max_size=2)
    relay = Relay(store.recorder, producer, topic, views)
    total = store.recorder.max_notification_id() or 0
    start = time.perf_counter()
    while relay.relay_once(batch=2000):
        pass
    relay_rate = total / (time.perf_counter() - start)
    rows = store.recorder.select_notifications(start=1, limit=total)
    raw = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5, batch_size=256 * 1024
    )
    raw_topic = f"{topic}.raw"
    ensure_topic(bootstrap, raw_topic)
    start = time.perf_counter()
    for row in rows:
        raw.send(
            raw_topic,
            key=str(row.originator_id).encode(),
            value=row.state,
            headers=[("notification_id", str(row.id).encode())],
        )
    raw.flush()
    raw_rate = len(rows) / (time.perf_counter() - start)
    producer.close()
    raw.close()
    views.close()
    return relay_rate, raw_rate, total


def bench_replay(store: Store, dsn: str) -> tuple[float, float]:
    total = store.recorder.max_notification_id() or 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA replay")
    pg_views = PostgresViews(f"{dsn} options=-csearch_path=replay", max_size=2)
    pg_rate = _replay_rate(pg_views, store, total)
    pg_views.close()
    with tempfile.TemporaryDirectory() as folder:
        scratch = SqliteViews(Path(folder) / "scratch.sqlite3")
        sqlite_rate = _replay_rate(scratch, store, total)
        scratch.close()
    return pg_rate, sqlite_rate


def _replay_rate(views: PostgresViews | SqliteViews, store: Store, total: int) -> float:
    """Events/s from the first poll until the last event is in the views (no idle wait)."""
    runner = ProjectionRunner(views, NotificationLogSource(store.recorder), [BalancesProjection()])
    start = time.perf_counter()
    while runner.position < total:
        runner.run_once(max_records=REPLAY_BATCH, timeout_s=0)
    return total / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=3000, help="events to append (default 3000)")
    args = parser.parse_args()
    pg, kafka = LocalPostgres(ROOT / "postgres"), LocalKafka(ROOT / "kafka")
    pg.up()
    kafka.up()
    dsn = _database(pg)
    app_rate, raw_rate, store = bench_append(dsn, args.events)
    print(
        f"append   {app_rate:10.0f} events/s via service {raw_rate:10.0f} rows/s raw psycopg   "
        f"ratio {app_rate / raw_rate:.2f}"
    )
    relay_rate, raw_send, total = bench_relay(store, dsn, kafka.bootstrap)
    print(
        f"relay    {relay_rate:10.0f} events/s via Relay  {raw_send:10.0f} msgs/s raw producer   "
        f"ratio {relay_rate / raw_send:.2f}   ({total} events)"
    )
    pg_rate, sqlite_rate = bench_replay(store, dsn)
    print(
        f"replay   {pg_rate:10.0f} events/s into PostgreSQL views   "
        f"{sqlite_rate:10.0f} events/s into scratch SQLite"
    )
    store.close()


if __name__ == "__main__":
    main()
