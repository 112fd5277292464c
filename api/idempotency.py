"""``Idempotency-Key``: a retried command returns the first result and creates nothing new.

The first request with a key reserves it (one row, inserted or not, atomically); the
command runs; its answer is stored under the key. A retry with the same key and the same
request gets that answer again, marked ``Idempotent-Replayed: true``; with another request
it is refused; while the first is still running it is told to retry shortly. A command that
fails releases the key, so the retry really retries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Response

from modelyard.adapters.views.db import ViewDatabase
from modelyard.api.errors import EdgeError

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS idempotency (
        account_id TEXT NOT NULL,
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (account_id, key)
    )
    """,
)
PENDING = 0


class IdempotencyConflict(EdgeError):
    """The key was used with another request, or its first request is still running."""

    code = "IDEMPOTENCY_CONFLICT"


def run_once(
    views: ViewDatabase,
    *,
    account_id: str,
    key: str | None,
    request: bytes,
    status: int,
    command: Callable[[], dict[str, Any]],
) -> Response[Any]:
    """Run ``command`` at most once per (account, key); answer as the first run did."""
    if not key:
        return Response(command(), status_code=status)
    if len(key) > 255:
        raise IdempotencyConflict("An Idempotency-Key has at most 255 characters.")
    digest = hashlib.sha256(request).hexdigest()
    with views.transaction() as tx:
        reserved = tx.execute(
            "INSERT INTO idempotency (account_id, key, request_hash, status, body, created_at)"
            " VALUES (%s, %s, %s, %s, '', %s) ON CONFLICT (account_id, key) DO NOTHING RETURNING key",
            [account_id, key, digest, PENDING, datetime.now(UTC).isoformat()],
        )
        if not reserved:
            return _replay(
                tx.execute(
                    "SELECT request_hash, status, body FROM idempotency WHERE account_id = %s AND key = %s",
                    [account_id, key],
                )[0],
                digest,
            )
    try:
        body = command()
    except BaseException:
        with views.transaction() as tx:
            tx.execute("DELETE FROM idempotency WHERE account_id = %s AND key = %s", [account_id, key])
        raise
    with views.transaction() as tx:
        tx.execute(
            "UPDATE idempotency SET status = %s, body = %s WHERE account_id = %s AND key = %s",
            [status, msgspec.json.encode(body).decode(), account_id, key],
        )
    return Response(body, status_code=status)


def _replay(row: tuple[Any, ...], digest: str) -> Response[Any]:
    request_hash, status, body = row
    if request_hash != digest:
        raise IdempotencyConflict("This Idempotency-Key was used with a different request.")
    if int(status) == PENDING:
        raise IdempotencyConflict(
            "The first request with this Idempotency-Key is still running; retry in a moment.",
            headers={"Retry-After": "1"},
        )
    return Response(
        msgspec.json.decode(body), status_code=int(status), headers={"Idempotent-Replayed": "true"}
    )
