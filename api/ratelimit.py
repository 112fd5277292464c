"""Per-caller request limits on every route, with the ``X-RateLimit-*`` headers on every answer.

The count lives in the limiter the composition root hands it: PostgreSQL in cluster mode, so
the limit holds across every API process, or in-process in the embedded default. A valid
key is counted by its hash; every other request — no key, or a key that authenticates
nothing — by the client's address, so minting random keys buys no fresh bucket: failed
authentication is limited per address. Over the limit the answer is 429
RATE_LIMIT_EXCEEDED with ``Retry-After``.

Which limit: every management call (both dialects: provisioning, polling, keys,
organisations, the catalog) and the first document's own routes (``/v1/…``, ``/mcp``) count
against the first document's flat ``rate_limit_rpm`` per key (1,000 by default), which its
clients rely on, and which the second document's own polling example (every 5 s) needs;
the second document's inference calls (``/api/v1/public/…/chat/completions``, embeddings,
rerank, audio) count against the key's plan's requests per minute, in a window of their
own, and its tokens per minute (``api.access.limits`` counts the tokens). Every answer of a
valid key on ``/api/v1/public/…`` also reports the tokens window
(``X-RateLimit-*-Tokens``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import anyio
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.adapters.ratelimit.limiter import Decision, InProcessRateLimiter, RateLimiter
from modelyard.api.access.limits import TokenLimits, plan_of, requests_bucket, token_headers
from modelyard.api.auth import KeyCache, Principal
from modelyard.api.errors import RateLimitExceeded, error_response
from modelyard.domain.catalog.models import Plan
from modelyard.domain.catalog.plans import PLAN_LIMITS, Limits
from modelyard.domain.keys.aggregate import hash_secret

#: The second document's routes: they report the key's plan's tokens window.
PLAN_LIMITED = "/api/v1/public"
#: Its inference routes (by prefix, or the chat suffix of deployment and org routes): they
#: count against the plan's requests per minute.
PLAN_INFERENCE = tuple(f"{PLAN_LIMITED}/{p}" for p in ("chat/", "embeddings/", "rerank", "audio/"))


def plan_limited(path: str) -> bool:
    """Whether ``path`` is an inference call of the second dialect (limited by the plan)."""
    return path.startswith(PLAN_INFERENCE) or (
        path.startswith(PLAN_LIMITED) and path.endswith("/chat/completions")
    )


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


async def _caller(scope: Scope, keys: KeyCache) -> tuple[str, Principal | None]:
    """The bucket a request counts against: its key's if the key is valid, else its address's."""
    secret = _bearer(scope)
    if secret is None:
        return _address(scope), None
    if keys.cached(secret):
        principal = keys.lookup(secret)
    else:
        # Not cached: look it up off the event loop (the handler's guard then finds it cached).
        principal = await anyio.to_thread.run_sync(keys.lookup, secret)
    return ("key:" + hash_secret(secret), principal) if principal is not None else (_address(scope), None)


def _unmetered(scope: Scope) -> bool:
    path: str = scope["path"]
    return path in {"/health", "/docs", "/metrics"} or path.startswith("/docs/")


# Set on a request's scope once it was counted (by the middleware, on a routed request).
COUNTED = "modelyard.rate_counted"


class RateLimitMiddleware(ASGIMiddleware):
    """Counts each request against its caller's per-minute limit."""

    scopes = (ScopeType.HTTP,)
    # Liveness probes, scrapes and the API's own documentation are never counted against a caller.
    should_bypass_for_scope = staticmethod(_unmetered)

    def __init__(
        self,
        limiter: RateLimiter,
        limit: int,
        keys: KeyCache,
        plan_limits: Mapping[Plan, Limits] = PLAN_LIMITS,
    ) -> None:
        self._limiter, self._limit, self._keys = limiter, limit, keys
        self._tokens = TokenLimits(limiter, plan_limits)

    async def judge(self, scope: Scope) -> tuple[dict[str, str], RateLimitExceeded | None]:
        """Count the request; its headers, and the refusal if it is over the limit."""
        scope[COUNTED] = True  # type: ignore[literal-required]  # our own key on the scope
        limiter, limit = self._limiter, self._limit
        caller, principal = await _caller(scope, self._keys)
        path: str = scope["path"]
        by_plan = principal is not None and plan_limited(path)
        tokens_shown = principal is not None and path.startswith(PLAN_LIMITED)
        if by_plan and principal is not None:
            caller = requests_bucket(principal)
            limit = self._tokens.limit_of(principal).requests_per_minute

        def hit() -> Decision:
            return limiter.hit(caller, limit=limit, window_s=WINDOW_S, now=time.time())

        def hit_and_peek() -> tuple[Decision, dict[str, str]]:
            decision = hit()
            if not tokens_shown or principal is None:
                return decision, {}
            return decision, token_headers(self._tokens.peek(principal))

        # The in-process counter is a dict under a lock: no reason to leave the event loop.
        in_process = isinstance(limiter, InProcessRateLimiter)
        decision, extra = hit_and_peek() if in_process else await anyio.to_thread.run_sync(hit_and_peek)
        headers = {**decision.headers(), **extra}
        if decision.allowed:
            return headers, None
        which = f" ({plan_of(principal).value} plan)" if by_plan and principal else ""
        after = headers["Retry-After"]
        message = f"Over {limit} requests/min for this caller{which}; retry after {after} s."
        return headers, RateLimitExceeded(message, headers=headers)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Refuse over the limit; otherwise add the headers to whatever the route answers."""
        headers, refusal = await self.judge(scope)
        if refusal is not None:
            await _refuse(refusal, scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                mutable = MutableScopeHeaders.from_message(message)
                for name, value in headers.items():
                    if name not in mutable:  # a refusal's own figures (tokens) win
                        mutable[name] = value
            await send(message)

        await next_app(scope, receive, send_with_headers)


async def _refuse(refusal: RateLimitExceeded, scope: Scope, receive: Receive, send: Send) -> None:
    response = error_response(refusal, scope)
    await response.to_asgi_response(app=None, request=None)(scope, receive, send)  # type: ignore[arg-type]


async def count_unrouted(
    limits: RateLimitMiddleware, scope: Scope, receive: Receive, send: Send, app: ASGIApp
) -> None:
    """Run ``app``; a request no route took (404, 405: the middleware never saw it) is counted
    as it answers, gets the same headers, and is refused the same way over the limit."""
    if scope["type"] != ScopeType.HTTP or _unmetered(scope):
        await app(scope, receive, send)
        return
    refused = False

    async def counted_send(message: Message) -> None:
        nonlocal refused
        if refused:
            return  # the unrouted answer, replaced by the refusal
        if scope.get(COUNTED) or message["type"] != "http.response.start":
            await send(message)
            return
        headers, refusal = await limits.judge(scope)
        if refusal is not None:
            refused = True
            await _refuse(refusal, scope, receive, send)
            return
        mutable = MutableScopeHeaders.from_message(message)
        for name, value in headers.items():
            mutable[name] = value
        await send(message)

    await app(scope, receive, counted_send)
