"""``Idempotency-Key``: a retried command returns the first result and creates nothing new.

The first request with a key reserves it (one row, inserted or not, atomically); the
command runs; its answer is stored under the key. A retry with the same key and the same
request gets that answer again, marked ``Idempotent-Replayed: true``; with another request
it is refused; while the first is still running it is told to retry shortly. A command that
fails releases the key, so the retry really retries. The records live in the state store
(``modelyard.adapters.state``), which rebuilding the views never touches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Response

from modelyard.adapters.state import idempotency as store
from modelyard.adapters.views.db import ViewDatabase
from modelyard.api.errors import EdgeError


class IdempotencyConflict(EdgeError):
    """The key was used with another request, or its first request is still running."""

    code = "IDEMPOTENCY_CONFLICT"


def run_once(
    state: ViewDatabase,
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
    with state.transaction() as tx:
        if not store.reserve(tx, account_id, key, digest, datetime.now(UTC).isoformat()):
            return _replay(store.recorded(tx, account_id, key), digest)
    try:
        body = command()
    except BaseException:
        with state.transaction() as tx:
            store.release(tx, account_id, key)
        raise
    with state.transaction() as tx:
        store.complete(tx, account_id, key, status, msgspec.json.encode(body).decode())
    return Response(body, status_code=status)


def _replay(first: store.Recorded | None, digest: str) -> Response[Any]:
    if first is not None and first.request_hash != digest:
        raise IdempotencyConflict("This Idempotency-Key was used with a different request.")
    # None: the claim that refused ours was released (its command failed) in between.
    if first is None or first.status == store.PENDING:
        raise IdempotencyConflict(
            "The first request with this Idempotency-Key is still running; retry in a moment.",
            headers={"Retry-After": "1"},
        )
    return Response(
        msgspec.json.decode(first.body), status_code=first.status, headers={"Idempotent-Replayed": "true"}
    )
