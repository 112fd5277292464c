"""Per-caller request limits on every route, with the ``X-RateLimit-*`` headers on every answer.

The count lives in the limiter the composition root hands it: PostgreSQL in cluster mode, so
the limit holds across every API process, or in-process in the embedded default. A valid
key is counted by its hash; every other request — no key, or a key that authenticates
nothing — by the client's address, so minting random keys buys no fresh bucket: failed
authentication is limited per address. Over the limit the answer is 429
RATE_LIMIT_EXCEEDED with ``Retry-After``.
"""

from __future__ import annotations

import time

import anyio
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.adapters.ratelimit.limiter import Decision, InProcessRateLimiter, RateLimiter
from modelyard.api.auth import KeyCache
from modelyard.api.errors import RateLimitExceeded, error_response
from modelyard.domain.keys.aggregate import hash_secret

WINDOW_S = 60


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, secret = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and secret.strip():
                return secret.strip()
        if name == b"x-api-key" and value.strip():  # how Anthropic's clients send the key
            return value.decode("latin-1").strip()
    return None


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return f"ip:{client[0] if client else 'unknown'}"


async def _caller(scope: Scope, keys: KeyCache) -> str:
    """The bucket a request counts against: its key's if the key is valid, else its address's."""
    secret = _bearer(scope)
    if secret is None:
        return _address(scope)
    valid = keys.known(secret)
    if valid is None:
        # Not cached: look it up off the event loop (the handler's guard then finds it cached).
        valid = await anyio.to_thread.run_sync(keys.lookup, secret) is not None
    return "key:" + hash_secret(secret) if valid else _address(scope)


def _unmetered(scope: Scope) -> bool:
    path: str = scope["path"]
    return path in {"/health", "/docs", "/metrics"} or path.startswith("/docs/")


class RateLimitMiddleware(ASGIMiddleware):
    """Counts each request against its caller's per-minute limit."""

    scopes = (ScopeType.HTTP,)
    # Liveness probes, scrapes and the API's own documentation are never counted against a caller.
    should_bypass_for_scope = staticmethod(_unmetered)

    def __init__(self, limiter: RateLimiter, limit: int, keys: KeyCache) -> None:
        self._limiter, self._limit, self._keys = limiter, limit, keys

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Refuse over the limit; otherwise add the headers to whatever the route answers."""
        limiter, limit = self._limiter, self._limit
        caller = await _caller(scope, self._keys)

        def hit() -> Decision:
            return limiter.hit(caller, limit=limit, window_s=WINDOW_S, now=time.time())

        # The in-process counter is a dict under a lock: no reason to leave the event loop.
        in_process = isinstance(limiter, InProcessRateLimiter)
        decision = hit() if in_process else await anyio.to_thread.run_sync(hit)
        headers = decision.headers()
        if not decision.allowed:
            response = error_response(
                RateLimitExceeded(
                    f"Over {limit} requests/min for this caller; retry after {headers['Retry-After']} s.",
                    headers=headers,
                ),
                scope,
            )
            await response.to_asgi_response(app=None, request=None)(scope, receive, send)  # type: ignore[arg-type]
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                mutable = MutableScopeHeaders.from_message(message)
                for name, value in headers.items():
                    mutable[name] = value
            await send(message)

        await next_app(scope, receive, send_with_headers)
