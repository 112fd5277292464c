"""The state store's expiring claims and janitor queries on PostgreSQL (cluster mode)."""

from __future__ import annotations

import psycopg
import pytest

from modelyard.adapters.ratelimit.limiter import SCHEMA as WINDOWS
from modelyard.adapters.ratelimit.limiter import PostgresRateLimiter, prune_windows
from modelyard.adapters.state import idempotency as records
from modelyard.adapters.state.db import SCHEMA, add_columns
from modelyard.adapters.views.db import PostgresViews

pytestmark = pytest.mark.integration
T0 = 1_000_000.0

OLD_TABLE = """
CREATE TABLE idempotency (
    account_id TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL, status INTEGER NOT NULL,
    body TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (account_id, key)
)
"""


def test_claims_expire_and_are_taken_over_on_an_upgraded_postgres_table(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(OLD_TABLE)
        conn.execute("INSERT INTO idempotency VALUES ('acct', 'stuck', 'h', 0, '', 'then')")
    state = PostgresViews(pg_dsn, max_size=2, schema=(*SCHEMA, WINDOWS))
    try:
        add_columns(state)
        add_columns(state)  # every process runs it at start: twice is harmless
        with state.transaction() as tx:
            first = records.claim(tx, "acct", "k", "h", at="then", now=T0)
            assert first is not None
            assert records.claim(tx, "acct", "k", "h", at="then", now=T0 + 59) is None
            assert records.claim(tx, "acct", "k", "other", at="then", now=T0 + 61) is None
            assert records.claim(tx, "acct", "k", "h", at="then", now=T0 + 61) == first
            records.complete(tx, "acct", "k", first, status=201, body="{}")
            assert records.claim(tx, "acct", "k", "h", at="then", now=T0 + 62) is None
            later = records.claim(tx, "acct", "k", "h", at="then", now=T0 + 61 + records.RETENTION_S + 1)
            assert later not in (None, first)
            # The old pending row was adopted at open (now): not yet abandoned.
            assert records.recorded(tx, "acct", "stuck") is not None
    finally:
        state.close()


def test_the_janitor_prunes_rate_limit_windows_no_request_reads(pg_dsn: str) -> None:
    state = PostgresViews(pg_dsn, max_size=2, schema=(*SCHEMA, WINDOWS))
    try:
        limiter = PostgresRateLimiter(state.pool)
        limiter.hit("old", limit=5, window_s=60, now=60.0)
        limiter.hit("new", limit=5, window_s=60, now=600.0)
        with state.transaction() as tx:
            assert prune_windows(tx, before=300.0) == 1
            assert [row[0] for row in tx.execute("SELECT key FROM rate_limit_window")] == ["new"]
    finally:
        state.close()
