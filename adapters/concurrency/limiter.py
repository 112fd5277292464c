"""Requests in flight per deployment: one port, an in-process and a PostgreSQL implementation.

A request takes a lease before it reaches a replica and gives it back when its answer (or
stream) ends; a lease is refused when the deployment already has ``limit`` of them. In a
cluster the leases live in PostgreSQL's state store, so the limit holds across every API
process: taking one counts the deployment's live leases and inserts under an advisory lock
on the deployment, which serialises the processes deciding for it. A process that dies
holding leases cannot give them back, so each lease expires after ``LEASE_TTL_S`` — as long
as the gateway lets a request run — and an expired one no longer counts.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Protocol

from psycopg_pool import ConnectionPool

from modelyard.adapters.views.db import SCHEMA_LOCK

# As long as the gateway waits for a replica's answer (the forwarder's total timeout): a
# lease outliving its request only by a crash, and then not for longer than this.
LEASE_TTL_S = 600.0


class ConcurrencyLimiter(Protocol):
    """Leases on a deployment's concurrency, at most ``limit`` live at once."""

    def acquire(self, key: str, limit: int) -> str | None:
        """A lease id if fewer than ``limit`` are held for ``key``, else None."""
        ...

    def release(self, key: str, lease: str) -> None:
        """Give a lease back (once its request is done)."""
        ...


class InProcessConcurrency:
    """The embedded default: one process serves every request, so a counter is the truth."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, set[str]] = {}

    def acquire(self, key: str, limit: int) -> str | None:
        """See :class:`ConcurrencyLimiter`."""
        with self._lock:
            held = self._held.setdefault(key, set())
            if len(held) >= limit:
                return None
            lease = uuid.uuid4().hex
            held.add(lease)
            return lease

    def release(self, key: str, lease: str) -> None:
        """See :class:`ConcurrencyLimiter`."""
        with self._lock:
            held = self._held.get(key)
            if held is not None:
                held.discard(lease)
                if not held:
                    del self._held[key]


SCHEMA = """
CREATE TABLE IF NOT EXISTS concurrency_leases (
    key TEXT NOT NULL,
    lease TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (key, lease)
)
"""

# Under the deployment's advisory lock: forget its expired leases, then take one if room is left.
_ACQUIRE = """
WITH live AS (
    SELECT count(*) AS n FROM concurrency_leases WHERE key = %(key)s AND expires_at > %(now)s
)
INSERT INTO concurrency_leases (key, lease, expires_at)
SELECT %(key)s, %(lease)s, %(expires)s WHERE (SELECT n FROM live) < %(limit)s
RETURNING lease
"""


class PostgresConcurrency:
    """Cluster mode: the leases live in PostgreSQL, shared by every API process."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        with pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [SCHEMA_LOCK])
            conn.execute(SCHEMA)

    def acquire(self, key: str, limit: int) -> str | None:
        """See :class:`ConcurrencyLimiter`."""
        now = time.time()
        lease = uuid.uuid4().hex
        params = {"key": key, "lease": lease, "now": now, "expires": now + LEASE_TTL_S, "limit": limit}
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"concurrency:{key}"])
            conn.execute("DELETE FROM concurrency_leases WHERE key = %s AND expires_at <= %s", [key, now])
            taken = conn.execute(_ACQUIRE, params).fetchone()
        return None if taken is None else lease

    def release(self, key: str, lease: str) -> None:
        """See :class:`ConcurrencyLimiter`."""
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM concurrency_leases WHERE key = %s AND lease = %s", [key, lease])
