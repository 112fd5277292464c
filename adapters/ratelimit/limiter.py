"""Fixed-window counters: one port, an in-process and a PostgreSQL implementation.

A window is the UTC minute (or any ``window_s``) a request falls in; a key may make
``limit`` requests in it. The PostgreSQL counter is one ``INSERT … ON CONFLICT … DO UPDATE …
RETURNING`` per request: the row lock serialises every API process on the same key, so the
limit holds exactly across processes, not per process. A request over the limit is still
counted (its row says how hard the key is pushing) but is refused.
"""

from __future__ import annotations

import threading
from typing import Protocol

import msgspec
from psycopg_pool import ConnectionPool

from modelyard.adapters.views.db import SCHEMA_LOCK


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one request against a limit, with what the headers report."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int

    def headers(self) -> dict[str, str]:
        """The ``X-RateLimit-*`` headers (and ``Retry-After`` when refused)."""
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, self.reset_s))
        return headers


class RateLimiter(Protocol):
    """Counts a request for ``key`` at ``now`` (epoch seconds) and decides."""

    def hit(self, key: str, *, limit: int, window_s: int, now: float, cost: int = 1) -> Decision:
        """Count ``cost`` against ``key``'s current window and say whether it is allowed."""
        ...


def _decide(count: int, limit: int, window_start: int, window_s: int, now: float) -> Decision:
    reset_s = max(0, int(window_start + window_s - now + 0.999))
    return Decision(allowed=count <= limit, limit=limit, remaining=max(0, limit - count), reset_s=reset_s)


class InProcessRateLimiter:
    """The embedded default: one process serves every request, so a dict is the truth."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], int] = {}

    def hit(self, key: str, *, limit: int, window_s: int, now: float, cost: int = 1) -> Decision:
        """See :class:`RateLimiter`."""
        window_start = int(now // window_s * window_s)
        with self._lock:
            count = self._counts.get((key, window_start), 0) + cost
            self._counts[(key, window_start)] = count
            if len(self._counts) > 100_000:
                # Old windows can never be hit again; drop them rather than grow forever.
                self._counts = {k: v for k, v in self._counts.items() if k[1] >= window_start}
        return _decide(count, limit, window_start, window_s, now)


SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_limit_window (
    key TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (key, window_start)
)
"""


class PostgresRateLimiter:
    """Cluster mode: the count lives in PostgreSQL, shared by every API process."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        with pool.connection() as conn, conn.transaction():
            # API processes start together; two creating the table at once collide in the
            # catalog (pg_type's unique index), so they take turns on the schema lock the
            # views use for their own DDL.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [SCHEMA_LOCK])
            conn.execute(SCHEMA)

    def hit(self, key: str, *, limit: int, window_s: int, now: float, cost: int = 1) -> Decision:
        """See :class:`RateLimiter`."""
        window_start = int(now // window_s * window_s)
        with self._pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO rate_limit_window AS w (key, window_start, count) VALUES (%s, %s, %s)"
                " ON CONFLICT (key, window_start) DO UPDATE SET count = w.count + EXCLUDED.count"
                " RETURNING count",
                [key, window_start, cost],
            ).fetchone()
        assert row is not None
        return _decide(int(row[0]), limit, window_start, window_s, now)

    def prune(self, *, before: float) -> int:
        """Delete windows that ended before ``before``; returns how many rows went."""
        with self._pool.connection() as conn:
            return conn.execute(
                "DELETE FROM rate_limit_window WHERE window_start < %s", [int(before)]
            ).rowcount
