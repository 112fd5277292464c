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
from litestar import MediaType, Response

from modelyard.adapters.state import idempotency as store
from modelyard.adapters.views.db import ViewDatabase
from modelyard.api.errors import EdgeError


class IdempotencyConflict(EdgeError):
    """The key was used with another request, or its first request is still running."""

    code = "IDEMPOTENCY_CONFLICT"


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """A command's answer: its status and JSON body, and whether it is a stored first answer."""

    status: int
    body: bytes
    replayed: bool = False


def fingerprint(*parts: object) -> bytes:
    """The bytes that identify a request under a key: the command's name and its arguments."""
    return msgspec.json.encode(parts)


def run_once(
    state: ViewDatabase,
    *,
    account_id: str,
    key: str | None,
    request: bytes,
    status: int,
    command: Callable[[], msgspec.Struct],
) -> Outcome:
    """Run ``command`` at most once per (account, key); answer as the first run did."""
    if not key:
        return Outcome(status=status, body=msgspec.json.encode(command()))
    if len(key) > 255:
        raise IdempotencyConflict("An Idempotency-Key has at most 255 characters.")
    digest = hashlib.sha256(request).hexdigest()
    with state.transaction() as tx:
        if not store.reserve(tx, account_id, key, digest, datetime.now(UTC).isoformat()):
            return _replay(store.recorded(tx, account_id, key), digest)
    try:
        body = msgspec.json.encode(command())
    except BaseException:
        with state.transaction() as tx:
            store.release(tx, account_id, key)
        raise
    with state.transaction() as tx:
        store.complete(tx, account_id, key, status, body.decode())
    return Outcome(status=status, body=body)


def _replay(first: store.Recorded | None, digest: str) -> Outcome:
    if first is not None and first.request_hash != digest:
        raise IdempotencyConflict("This Idempotency-Key was used with a different request.")
    # None: the claim that refused ours was released (its command failed) in between.
    if first is None or first.status == store.PENDING:
        raise IdempotencyConflict(
            "The first request with this Idempotency-Key is still running; retry in a moment.",
            headers={"Retry-After": "1"},
        )
    return Outcome(status=first.status, body=first.body.encode(), replayed=True)


def response(outcome: Outcome) -> Response[Any]:
    """The HTTP answer of an outcome; a replayed one says so in ``Idempotent-Replayed``."""
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return Response(outcome.body, status_code=outcome.status, media_type=MediaType.JSON, headers=headers)
