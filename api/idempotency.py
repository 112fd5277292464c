"""``Idempotency-Key``: a retried command returns the first result and creates nothing new.

The first request with a key claims it (one row, inserted or not, atomically); the
command runs; its answer is stored under the key. A retry with the same key and the same
request gets that answer again, marked ``Idempotent-Replayed: true``; with another request
it is refused; while the first is still running it is told to retry shortly. A command that
fails releases the key, so the retry really retries. The records live in the state store
(``modelyard.adapters.state``), which rebuilding the views never touches, and expire: a
pending claim older than ``ABANDONED_AFTER_S`` (its process died mid-command) may be
claimed again, and every record goes after ``RETENTION_S`` (see the store's module).

The command is handed the claim's id, which a re-claim keeps. A retry after a crash thus
runs the command again *with the same id*: a command that creates something names it by
that id, so the store's uniqueness lets the retry find what the dead first attempt made
instead of making a second (provisioning does; scale and destroy act on a named
deployment and simply run again, which the lifecycle's guards keep harmless).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID, uuid4

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


A = TypeVar("A", bound=msgspec.Struct)


def _same(answer: A) -> msgspec.Struct:
    return answer


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
    command: Callable[[UUID], A],
    stored: Callable[[A], msgspec.Struct] = _same,
) -> Outcome:
    """Run ``command`` at most once per (account, key); answer as the first run did.

    ``command`` gets the claim's id (a fresh one without a key). What is kept for retries
    is ``stored(answer)``: the caller leaves out what must not outlive this answer (a
    shown-once secret), and fills it back in on a replay if it may still be shown.
    """
    if not key:
        return Outcome(status=status, body=msgspec.json.encode(command(uuid4())))
    if len(key) > 255:
        raise IdempotencyConflict("An Idempotency-Key has at most 255 characters.")
    digest = hashlib.sha256(request).hexdigest()
    with state.transaction() as tx:
        claim = store.claim(tx, account_id, key, digest, at=datetime.now(UTC).isoformat(), now=time.time())
        if claim is None:
            return _replay(store.recorded(tx, account_id, key), digest)
    try:
        answer = command(claim)
    except BaseException:
        with state.transaction() as tx:
            store.release(tx, account_id, key, claim)
        raise
    with state.transaction() as tx:
        kept = msgspec.json.encode(stored(answer)).decode()
        store.complete(tx, account_id, key, claim, status=status, body=kept)
    return Outcome(status=status, body=msgspec.json.encode(answer))


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
