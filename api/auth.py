"""Bearer keys: looked up by hash in the keys view, cached for a few seconds.

A management key (``auxen_live_…``) manages; an instance key (``auxk_…``) infers on its
own deployment; a scoped key infers on the deployments it was granted. Neither does the
other's work. A revoked key stops working within ``CACHE_TTL_S``.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

import anyio
import msgspec
from cachetools import TTLCache
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from modelyard.adapters.state import key_use
from modelyard.adapters.views.db import ViewDatabase
from modelyard.api.errors import ApiKeyRequired, Forbidden, InvalidApiKey
from modelyard.domain.access import model as access
from modelyard.domain.keys.aggregate import KeyKind, Role, hash_secret
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import InstanceNotFound
from modelyard.projections.keys.queries import principal_by_secret_hash

# How long a key lookup is trusted: revocation takes effect at most this late.
CACHE_TTL_S = 2.0
# Known keys kept at most: an LRU, so the keys in use stay and idle ones make room.
CACHE_MAX_KEYS = 10_000
# Unknown keys are remembered apart, fewer and shorter: anyone can mint them, so they must
# neither evict the known ones nor grow the cache, yet a client retrying one bad key
# should not cost a lookup per request.
NEGATIVE_MAX_KEYS = 1_000
NEGATIVE_TTL_S = 1.0


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling, and with what kind of key."""

    key_id: str
    account_id: str
    kind: KeyKind
    deployment_uuid: str | None = None
    grants: frozenset[str] = frozenset()
    # The account's plan: the second dialect's per-minute limits follow it.
    plan: str = "free"

    def caller(self) -> access.Caller:
        """This key as the model of permissions sees it (built once per principal)."""
        return _caller_of(self)

    def may_infer_on(self, deployment_uuid: str) -> bool:
        """Whether this key may call that deployment."""
        return access.infer(self.caller(), UUID(hex=deployment_uuid)) is access.Verdict.ALLOWED


@lru_cache(maxsize=CACHE_MAX_KEYS)
def _caller_of(principal: Principal) -> access.Caller:
    # Every inference call asks the model: the principal's facts are parsed once, not per call.
    return access.Caller(
        key_id=principal.key_id,
        account_id=ids.parse_id(principal.account_id, ids.ACCOUNT),
        kind=principal.kind,
        deployment_id=UUID(hex=principal.deployment_uuid) if principal.deployment_uuid else None,
        grants={UUID(hex=g): Role.INFERENCE for g in principal.grants},
    )


class KeyCache:
    """Key hash -> principal (or None), each answer kept ``CACHE_TTL_S``, the cache bounded.

    Known keys live in an LRU of ``CACHE_MAX_KEYS``; unknown ones in a smaller one of their
    own (``NEGATIVE_MAX_KEYS``, ``NEGATIVE_TTL_S``), so a stream of random keys can neither
    grow the cache nor push the keys in use out of it.
    """

    def __init__(self, views: ViewDatabase, state: ViewDatabase | None = None) -> None:
        self._views, self._state = views, state
        # cachetools' caches are not thread-safe; lookups run in worker threads.
        self._lock = threading.Lock()
        self._known: TTLCache[str, Principal] = TTLCache(CACHE_MAX_KEYS, CACHE_TTL_S, timer=time.monotonic)
        self._unknown: TTLCache[str, bool] = TTLCache(NEGATIVE_MAX_KEYS, NEGATIVE_TTL_S, timer=time.monotonic)

    def __len__(self) -> int:
        with self._lock:
            return len(self._known) + len(self._unknown)

    def _cached(self, digest: str) -> tuple[bool, Principal | None]:
        """(whether the key is cached, its principal: None for a key cached as unknown)."""
        with self._lock:
            principal = self._known.get(digest)
            return principal is not None or digest in self._unknown, principal

    def cached(self, secret: str) -> bool:
        """Whether ``lookup`` would answer without the database."""
        return self._cached(hash_secret(secret))[0]

    def known(self, secret: str) -> bool | None:
        """Whether the cache holds the key as valid (True), as unknown (False), or not at all (None)."""
        hit, principal = self._cached(hash_secret(secret))
        return principal is not None if hit else None

    def lookup(self, secret: str) -> Principal | None:
        """The principal a secret authenticates, or None for an unknown or revoked key."""
        digest = hash_secret(secret)
        hit, found = self._cached(digest)
        if hit:
            return found
        principal = self._load(digest)
        with self._lock:
            if principal is None:
                self._known.pop(digest, None)  # revoked: forget it among the known
                self._unknown[digest] = True
            else:
                self._unknown.pop(digest, None)
                self._known[digest] = principal
        return principal

    def _load(self, digest: str) -> Principal | None:
        with self._views.read() as tx:
            found = principal_by_secret_hash(tx, digest)
        if found is None:
            return None
        if self._state is not None:
            # Once per key per cache period: when it was last used, to a few seconds.
            with self._state.transaction() as tx:
                key_use.touch(tx, found.key_id, datetime.now(UTC).isoformat())
        return Principal(
            key_id=found.key_id,
            account_id=found.account_id,
            kind=KeyKind(found.kind),
            deployment_uuid=found.deployment_id,
            grants=found.grants,
            plan=found.plan,
        )


class ManagementGuard:
    """Litestar guard: the request must carry a management key, checked before the body is read.

    The principal it authenticates is the request's ``user`` (Litestar's place for it). A
    key not yet cached is looked up off the event loop.
    """

    def __init__(self, keys: KeyCache) -> None:
        self._keys = keys

    def __deepcopy__(self, memo: dict[int, object]) -> ManagementGuard:
        # Litestar deep-copies a router when it is registered; its copy must share this
        # process's key cache (and its database connection), not try to clone it.
        return self

    async def __call__(self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        """Authenticate the caller, or refuse with API_KEY_REQUIRED / INVALID_API_KEY."""
        authorization = connection.headers.get("authorization", "")
        if self._keys.cached(bearer_secret(authorization)):
            principal = management_principal(self._keys, authorization)
        else:
            principal = await anyio.to_thread.run_sync(management_principal, self._keys, authorization)
        connection.scope["user"] = principal


def bearer_secret(authorization: str) -> str:
    """The secret of an ``Authorization: Bearer …`` header; absent -> API_KEY_REQUIRED."""
    scheme, _, secret = authorization.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiKeyRequired("Send your key as 'Authorization: Bearer <key>'.")
    return secret.strip()


def _principal(keys: KeyCache, authorization: str) -> Principal:
    principal = keys.lookup(bearer_secret(authorization))
    if principal is None:
        raise InvalidApiKey("The key is unknown, revoked, or from another environment.")
    return principal


def management_principal(keys: KeyCache, authorization: str) -> Principal:
    """The caller, who must hold a management key."""
    principal = _principal(keys, authorization)
    if principal.kind is not KeyKind.MANAGEMENT:
        raise InvalidApiKey("This is an inference key; management routes take the account's auxen_live_ key.")
    return principal


def inference_principal(keys: KeyCache, authorization: str, deployment_uuid: str) -> Principal:
    """The caller, who must hold a key that may infer on this deployment."""
    principal = _principal(keys, authorization)
    verdict = access.infer(principal.caller(), UUID(hex=deployment_uuid))
    if verdict is access.Verdict.WRONG_KEY:
        raise InvalidApiKey("A management key does not infer; use the instance's auxk_ key.")
    if verdict is access.Verdict.NOT_FOUND:
        raise InstanceNotFound("No such instance for this key: an auxk_ key calls its own instance.")
    if verdict is access.Verdict.FORBIDDEN:
        raise Forbidden("This key has not been granted access to that deployment.")
    return principal
