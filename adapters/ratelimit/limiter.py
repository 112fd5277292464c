"""Sliding-window limits: one port, an in-process and a PostgreSQL implementation.

A key may make ``limit`` requests per ``window_s`` seconds, judged on a *sliding* window,
not on the calendar window alone: a fixed window lets twice the limit through across a
boundary (a burst at 0:59 and another at 1:00). The count is kept per calendar window, as
before, and a request is judged against the estimate ``previous * (1 - elapsed/window_s)
+ current`` — the previous window's count weighted by how much of it still lies inside
the last ``window_s`` seconds (Cloudflare's approximation). A burst right after a full
burst is refused; the previous window's share comes back only as it slides out, at the
same pace a token bucket of ``limit`` per ``window_s`` refills.

Only admitted requests are counted: a refused one takes nothing, so a client that backs
off gets its capacity back as the window slides. The PostgreSQL limiter decides and
counts in one statement whose row lock serialises every API process on the same key, so
the limit holds exactly across processes, not per process.
"""

from __future__ import annotations

import math
import threading
from typing import Protocol

import msgspec
from psycopg_pool import ConnectionPool

from modelyard.adapters.views.db import SCHEMA_LOCK
from modelyard.projections.base import Tx


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one request against a limit, with what the headers report."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    # Refused: seconds until the same request would be admitted.
    retry_s: int = 0

    def headers(self) -> dict[str, str]:
        """The ``X-RateLimit-*`` headers (and ``Retry-After`` when refused)."""
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, self.retry_s))
        return headers


class RateLimiter(Protocol):
    """Counts a request for ``key`` at ``now`` (epoch seconds) and decides."""

    def hit(self, key: str, *, limit: int, window_s: int, now: float, cost: int = 1) -> Decision:
        """Admit ``cost`` against ``key``'s sliding window if it fits, and say whether it did."""
        ...

    def add(self, key: str, *, window_s: int, at: float, amount: int) -> None:
        """Correct the count of the window ``at`` falls in by ``amount`` (never below zero)."""
        ...


class Window(msgspec.Struct, frozen=True, kw_only=True):
    """Where ``now`` falls: the calendar window's start, the previous one's, and its weight."""

    start: int
    previous: int
    size: int
    now: float

    @classmethod
    def at(cls, now: float, window_s: int) -> Window:
        """The window ``now`` falls in."""
        start = int(now // window_s * window_s)
        return cls(start=start, previous=start - window_s, size=window_s, now=now)

    @property
    def weight(self) -> float:
        """How much of the previous window still lies in the last ``size`` seconds."""
        return max(0.0, 1.0 - (self.now - self.start) / self.size)

    def fits(self, previous: int, current: int, limit: int, cost: int) -> bool:
        """Whether ``cost`` more keeps the sliding estimate within ``limit``."""
        return previous * self.weight + current + cost <= limit

    def decide(self, previous: int, current: int, limit: int, cost: int, *, allowed: bool) -> Decision:
        """The headers' figures once the request was admitted (counted in ``current``) or not."""
        used = previous * self.weight + current
        reset_s = max(0, math.ceil(self.start + self.size - self.now))
        retry_s = 0 if allowed else self._retry_after(previous, current, limit, cost)
        return Decision(
            allowed=allowed,
            limit=limit,
            remaining=max(0, math.floor(limit - used + 1e-9)),
            reset_s=reset_s,
            retry_s=retry_s,
        )

    def _retry_after(self, previous: int, current: int, limit: int, cost: int) -> int:
        # The earliest time the estimate leaves room for ``cost``: later in this window if
        # the current count alone allows it (the previous window sliding out), else in the
        # next one, where this window's count becomes the one sliding out.
        if current + cost <= limit:
            share = 1.0 if previous == 0 else 1.0 - (limit - current - cost) / previous
            at = self.start + self.size * share
        else:
            share = 1.0 if current == 0 else 1.0 - max(0, limit - cost) / current
            at = self.start + self.size * (1.0 + share)
        return max(1, math.ceil(at - self.now - 1e-9))


class InProcessRateLimiter:
    """The embedded default: one process serves every request, so a dict is the truth."""

    # Past this many (key, window) counts, windows that can no longer be read are dropped.
    MAX_COUNTS = 100_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], int] = {}

    def hit(self, key: str, *, limit: int, window_s: int, now: float, cost: int = 1) -> Decision:
        """See :class:`RateLimiter`."""
        window = Window.at(now, window_s)
        with self._lock:
            previous = self._counts.get((key, window.previous), 0)
            current = self._counts.get((key, window.start), 0)
            allowed = window.fits(previous, current, limit, cost)
            if allowed:
                current += cost
                self._counts[(key, window.start)] = current
                if len(self._counts) > self.MAX_COUNTS:
                    self._counts = {k: v for k, v in self._counts.items() if k[1] >= window.previous}
        return window.decide(previous, current, limit, cost, allowed=allowed)

    def add(self, key: str, *, window_s: int, at: float, amount: int) -> None:
        """See :class:`RateLimiter`."""
        start = Window.at(at, window_s).start
        with self._lock:
            self._counts[(key, start)] = max(0, self._counts.get((key, start), 0) + amount)


SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_limit_window (
    key TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (key, window_start)
)
"""

# One statement decides and counts. ``prior`` is the count before this statement (its
# snapshot); the INSERT adds ``cost`` only while the sliding estimate stays within the
# limit: a new window's row is inserted only if the previous window leaves room, and an
# existing row is bumped under its row lock (which serialises every process on the key)
# only if the estimate with its locked count still fits. ``admitted`` is the new count, or
# NULL when refused.
_HIT = """
WITH previous AS (
    SELECT COALESCE(SUM(count), 0) AS n FROM rate_limit_window
    WHERE key = %(key)s AND window_start = %(previous)s
), admitted AS (
    INSERT INTO rate_limit_window AS w (key, window_start, count)
    SELECT %(key)s, %(start)s, %(cost)s
    WHERE (SELECT n FROM previous) * %(weight)s + %(cost)s <= %(limit)s
    ON CONFLICT (key, window_start) DO UPDATE SET count = w.count + EXCLUDED.count
    WHERE (SELECT n FROM previous) * %(weight)s + w.count + EXCLUDED.count <= %(limit)s
    RETURNING count
)
SELECT (SELECT n FROM previous),
       (SELECT count FROM admitted),
       (SELECT count FROM rate_limit_window WHERE key = %(key)s AND window_start = %(start)s)
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
        window = Window.at(now, window_s)
        params = {
            "key": key,
            "start": window.start,
            "previous": window.previous,
            "cost": cost,
            "limit": limit,
            "weight": window.weight,
        }
        with self._pool.connection() as conn:
            row = conn.execute(_HIT, params).fetchone()
        assert row is not None
        previous, admitted, prior = int(row[0]), row[1], int(row[2] or 0)
        if admitted is None:
            return window.decide(previous, prior, limit, cost, allowed=False)
        return window.decide(previous, int(admitted), limit, cost, allowed=True)

    def add(self, key: str, *, window_s: int, at: float, amount: int) -> None:
        """See :class:`RateLimiter`."""
        params = {"key": key, "start": Window.at(at, window_s).start, "amount": amount}
        with self._pool.connection() as conn:
            conn.execute(_ADD, params)


_ADD = """
INSERT INTO rate_limit_window AS w (key, window_start, count)
VALUES (%(key)s, %(start)s, GREATEST(0, %(amount)s))
ON CONFLICT (key, window_start) DO UPDATE SET count = GREATEST(0, w.count + %(amount)s)
"""


def prune_windows(tx: Tx, *, before: float) -> int:
    """In a transaction on the database holding the windows: delete those started before ``before``."""
    deleted = tx.execute("DELETE FROM rate_limit_window WHERE window_start < %s RETURNING key", [int(before)])
    return len(deleted)
