"""What one command costs as its account's history grows, on SQLite and PostgreSQL.

    .venv/bin/modelyard services up          # PostgreSQL on loopback
    .venv/bin/python bench/history_bench.py  # prints the tables

1. history: top-up, provision and one metered minute against an account with 10, 1,000,
   10,000 and 50,000 events (one deployment running on it, each minute one ``MinuteMetered``
   on the deployment and one ``CreditsCharged`` on the account), beside a raw single-row
   SELECT of the events table in the same run. ``warm`` is a process that has served the
   account before; ``cold`` is a process's first command on it (a fresh store object).
   The history is written in bulk through ``Store.record``: the domain's own commands
   decide each minute's events, folded as the meter would, many to a transaction.
2. append: events saved through the accounts service, one command and one transaction
   each, vs raw psycopg INSERTs of the same rows, one transaction each (PostgreSQL).
3. meter: one tick of the real ``Meter`` over 1,000 running deployments (PostgreSQL), as a
   share of the minute it meters.

Every figure is a median of ``--reps`` runs; ratios are taken within this run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from modelyard.adapters.eventlog.sources import NotificationLogSource
from modelyard.adapters.eventstore.env import postgres_env_from_conninfo
from modelyard.adapters.services.postgres import LocalPostgres
from modelyard.adapters.views.db import PostgresViews
from modelyard.domain.accounts import aggregate as accounts
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.deployments import aggregate as deployments
from modelyard.domain.deployments.metering import meter_minute
from modelyard.domain.deployments.service import (
    MeterMinute,
    OnDeployment,
    Provision,
    ReplicaCommand,
    RequestDeployment,
)
from modelyard.domain.keys.aggregate import hash_secret
from modelyard.domain.services import Services
from modelyard.domain.shared.events import DomainEvent
from modelyard.domain.shared.store import Store
from modelyard.projections.registry import all_projections
from modelyard.workers.meter import Meter
from modelyard.workers.projection_runner import ProjectionRunner

ROOT = Path(__file__).resolve().parents[1] / ".services"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
BATCH = 2_000  # events per bulk transaction while building a history
COMMANDS = ("top-up", "provision", "meter")


# --- stores ------------------------------------------------------------------------------


@contextmanager
def postgres_database(pg: LocalPostgres) -> Iterator[str]:
    """A scratch database, dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg.conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg.conninfo.replace("dbname=modelyard", f"dbname={name}")
    finally:
        with psycopg.connect(pg.conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def sqlite_env(path: Path) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path), "CREATE_TABLE": "y"}


def raw_select(kind: str, env: dict[str, str], dsn: str | None, reps: int) -> float:
    """Seconds for one raw single-row SELECT by primary key of the events table (median)."""
    if kind == "sqlite":
        import sqlite3

        conn = sqlite3.connect(env["SQLITE_DBNAME"])
        row = conn.execute("SELECT originator_id, originator_version FROM stored_events LIMIT 1").fetchone()
        query = "SELECT state FROM stored_events WHERE originator_id = ? AND originator_version = ?"

        def once() -> None:
            conn.execute(query, row).fetchone()

        took = _median(once, reps * 20)
        conn.close()
        return took
    assert dsn is not None
    with psycopg.connect(dsn, autocommit=True) as pconn:
        prow = pconn.execute(
            "SELECT originator_id, originator_version FROM modelyard_events LIMIT 1"
        ).fetchone()
        pquery = "SELECT state FROM modelyard_events WHERE originator_id = %s AND originator_version = %s"

        def ponce() -> None:
            pconn.execute(pquery, prow, prepare=True).fetchone()

        return _median(ponce, reps * 20)


def _median(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- one account's history ---------------------------------------------------------------


class History:
    """An enterprise account with one deployment running since ``T0`` and ``size`` events."""

    def __init__(self, services: Services, store: Store, size: int) -> None:
        self.account = services.accounts.open_account(
            OpenAccount(name=f"h{size}", plan="enterprise", at=T0)
        ).id
        services.accounts.add_credits(AddCredits(account_id=self.account, amount=10**12, at=T0))
        self.deployment = services.deployments.request(
            RequestDeployment(account_id=self.account, model="smollm2-135m", at=T0)
        ).id
        services.deployments.start_replica(ReplicaCommand(deployment_id=self.deployment, replica="r0", at=T0))
        services.deployments.activate(OnDeployment(deployment_id=self.deployment, at=T0))
        self.minute = T0
        dep = services.deployments.get(self.deployment)
        acc = services.accounts.get(self.account)
        batch: list[DomainEvent] = []
        while acc.version < size:
            at = self.minute + MINUTE
            metered = meter_minute(dep, self.minute, at)
            assert metered is not None
            charges = accounts.charge_minute(
                acc,
                deployment_id=dep.id,
                minute=self.minute,
                amount=metered.amount,
                metered_version=metered.originator_version,
                at=at,
            )
            dep = deployments.project_deployment(dep, [metered])  # type: ignore[assignment]
            acc = accounts.project_account(acc, charges)  # type: ignore[assignment]
            batch += [metered, *charges]
            self.minute = at
            if len(batch) >= BATCH:
                store.record(*batch)
                batch = []
        if batch:
            store.record(*batch)
        self.provisions = 0
        self.ended: list[UUID] = []

    def command(self, services: Services, name: str) -> None:
        if name == "top-up":
            services.accounts.add_credits(AddCredits(account_id=self.account, amount=1_000, at=self.minute))
        elif name == "provision":
            self.provisions += 1
            request = RequestDeployment(account_id=self.account, model="smollm2-135m", at=self.minute)
            made = services.deployments.provision(
                Provision(deployment=request, key_hash=hash_secret(f"k{self.provisions}"), key_display="…")
            )
            self.ended.append(made.id)
        else:
            at = self.minute + MINUTE
            services.deployments.meter(MeterMinute(deployment_id=self.deployment, minute=self.minute, at=at))
            self.minute = at

    def tidy(self, services: Services) -> None:
        """Tear down what ``provision`` made (untimed), so the plan's quota never fills."""
        for dep in self.ended:
            services.deployments.request_teardown(OnDeployment(deployment_id=dep, at=self.minute))
        self.ended = []


def bench_history(
    kind: str, env: dict[str, str], dsn: str | None, sizes: list[int], reps: int
) -> tuple[dict[tuple[int, str, str], float], float]:
    """(size, command, warm|cold) -> median seconds; and the raw SELECT's seconds."""
    store = Store(env=env)
    services = Services.over(store)
    histories = {}
    for size in sizes:
        start = time.perf_counter()
        histories[size] = History(services, store, size)
        print(f"  {kind}: built {size} events in {time.perf_counter() - start:.1f} s", flush=True)
    for history in histories.values():
        for name in COMMANDS:
            history.command(services, name)  # the process has now seen this account
        history.tidy(services)
    # Sizes and commands take turns within each round, so a shared machine's load drifts
    # over all of them alike.
    times: dict[tuple[int, str, str], list[float]] = {}
    for _ in range(reps):
        for size, history in histories.items():
            for name in COMMANDS:
                start = time.perf_counter()
                history.command(services, name)
                times.setdefault((size, name, "warm"), []).append(time.perf_counter() - start)
                fresh = Store(env=env)
                fresh.recorder.max_notification_id()  # connected before the clock starts
                fresh_services = Services.over(fresh)
                start = time.perf_counter()
                history.command(fresh_services, name)
                times.setdefault((size, name, "cold"), []).append(time.perf_counter() - start)
                fresh.close()
            history.tidy(services)
    figures = {key: statistics.median(values) for key, values in times.items()}
    select = raw_select(kind, env, dsn, reps)
    store.close()
    return figures, select


def print_history(
    results: dict[str, tuple[dict[tuple[int, str, str], float], float]], sizes: list[int]
) -> None:
    kinds = list(results)
    for mode in ("warm", "cold"):
        print(f"\n{mode}: ms per command ({' / '.join(kinds)})")
        print(f"| events on the account | {' | '.join(COMMANDS)} |")
        print("|---|" + "---|" * len(COMMANDS))
        for size in sizes:
            cells = [
                " / ".join(f"{results[k][0][size, name, mode] * 1000:.1f}" for k in kinds)
                for name in COMMANDS
            ]
            print(f"| {size:,} | {' | '.join(cells)} |")
        first, last = sizes[0], sizes[-1]
        cells = [
            " / ".join(
                f"{results[k][0][last, name, mode] / results[k][0][first, name, mode]:.2f}x" for k in kinds
            )
            for name in COMMANDS
        ]
        print(f"| ratio {last:,} / {first:,} | {' | '.join(cells)} |")
    selects = " / ".join(f"{results[k][1] * 1000:.3f}" for k in kinds)
    print(f"\nraw single-row SELECT by primary key: {selects} ms ({' / '.join(kinds)})")


# --- append ------------------------------------------------------------------------------


def bench_append(dsn: str, n: int, chunk: int = 100) -> tuple[float, float]:
    """Events/s through the accounts service, and rows/s of raw INSERTs, one transaction each.

    The two take turns, ``chunk`` events at a time: each raw round inserts the rows the
    service's round just wrote, into a table of the same columns and keys.
    """
    store = Store(env=postgres_env_from_conninfo(dsn))
    services = Services.over(store)
    services.accounts.open_account(OpenAccount(name="warm", at=T0))
    conn = psycopg.connect(dsn)
    conn.execute(
        "CREATE TABLE raw_events (id bigserial PRIMARY KEY, originator_id uuid, originator_version int,"
        " topic text, state bytea, UNIQUE (originator_id, originator_version))"
    )
    conn.commit()
    app_s = raw_s = 0.0
    account = None
    for done in range(0, n, chunk):
        first_id = (store.recorder.max_notification_id() or 0) + 1
        start = time.perf_counter()
        for i in range(done, done + chunk):
            if account is None or i % 10 == 0:
                account = services.accounts.open_account(OpenAccount(name=f"a{i}", at=T0)).id
            else:
                services.accounts.add_credits(AddCredits(account_id=account, amount=1000 + i, at=T0))
        app_s += time.perf_counter() - start
        rows = store.recorder.select_notifications(start=first_id, limit=chunk)
        start = time.perf_counter()
        for row in rows:
            conn.execute(
                "INSERT INTO raw_events (originator_id, originator_version, topic, state)"
                " VALUES (%s, %s, %s, %s)",
                [row.originator_id, row.originator_version, row.topic, row.state],
            )
            conn.commit()
        raw_s += time.perf_counter() - start
    conn.close()
    store.close()
    total = -(-n // chunk) * chunk
    return total / app_s, total / raw_s


# --- the meter ---------------------------------------------------------------------------


def bench_meter(dsn: str, count: int, per_account: int = 100) -> list[tuple[int, float]]:
    """(minutes charged, seconds) for the meter's first two ticks over ``count`` deployments."""
    store = Store(env=postgres_env_from_conninfo(dsn))
    services = Services.over(store)
    start = time.perf_counter()
    for a in range(-(-count // per_account)):
        account = services.accounts.open_account(OpenAccount(name=f"m{a}", plan="enterprise", at=T0)).id
        services.accounts.add_credits(AddCredits(account_id=account, amount=10**12, at=T0))
        for _ in range(min(per_account, count - a * per_account)):
            dep = services.deployments.request(
                RequestDeployment(account_id=account, model="smollm2-135m", at=T0)
            ).id
            services.deployments.start_replica(ReplicaCommand(deployment_id=dep, replica="r0", at=T0))
            services.deployments.activate(OnDeployment(deployment_id=dep, at=T0))
    print(f"  meter: {count} deployments running in {time.perf_counter() - start:.1f} s", flush=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA views")
    views = PostgresViews(f"{dsn} options=-csearch_path=views", max_size=2)
    projections = all_projections()
    views.ensure([statement for p in projections for statement in p.schema])
    runner = ProjectionRunner(views, NotificationLogSource(store.recorder), projections)
    total = store.recorder.max_notification_id() or 0
    while runner.position < total:
        runner.run_once(max_records=5_000, timeout_s=0)
    ticks = []
    for tick in (1, 2):
        # A fresh process (the worker after a restart) meters the first tick; the same one the second.
        now = T0 + tick * MINUTE + timedelta(seconds=5)
        meter = Meter(services.deployments, views, clock=lambda now=now: now)  # type: ignore[misc]
        start = time.perf_counter()
        charged = meter.run()
        ticks.append((charged, time.perf_counter() - start))
        total = store.recorder.max_notification_id() or 0
        while runner.position < total:
            runner.run_once(max_records=5_000, timeout_s=0)
    views.close()
    store.close()
    return ticks


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="10,1000,10000,50000", help="events on the account, comma-separated"
    )
    parser.add_argument("--reps", type=int, default=7, help="runs per figure (median)")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--append", type=int, default=2_000, help="events to append (0: skip)")
    parser.add_argument("--deployments", type=int, default=1_000, help="deployments to meter (0: skip)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    pg = LocalPostgres(ROOT / "postgres")
    pg.up()
    results: dict[str, Any] = {}
    for kind in args.stores.split(","):
        if kind == "sqlite":
            with tempfile.TemporaryDirectory() as folder:
                results[kind] = bench_history(
                    kind, sqlite_env(Path(folder) / "e.sqlite3"), None, sizes, args.reps
                )
        else:
            with postgres_database(pg) as dsn:
                results[kind] = bench_history(kind, postgres_env_from_conninfo(dsn), dsn, sizes, args.reps)
    print_history(results, sizes)
    if args.append:
        with postgres_database(pg) as dsn:
            app_rate, raw_rate = bench_append(dsn, args.append)
        print(
            f"\nappend (PostgreSQL): {app_rate:.0f} events/s via the service,"
            f" {raw_rate:.0f} rows/s raw INSERTs, ratio {app_rate / raw_rate:.2f}"
        )
    if args.deployments:
        with postgres_database(pg) as dsn:
            ticks = bench_meter(dsn, args.deployments)
        for n, (charged, seconds) in enumerate(ticks, 1):
            print(
                f"meter tick {n} (PostgreSQL): {charged} minutes charged over {args.deployments} deployments"
                f" in {seconds:.2f} s = {seconds / 60:.1%} of the minute"
            )


if __name__ == "__main__":
    main()
