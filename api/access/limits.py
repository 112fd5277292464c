"""Per-plan limits on the second dialect's routes: requests and tokens per minute per key.

Requests are counted by the rate-limit middleware (``api.ratelimit``) against the plan's
``requests_per_minute``. Tokens are counted here, on the inference routes, in the same
limiter (PostgreSQL in a cluster, so every API process shares the count): before a call is
forwarded it *reserves* an upper bound of what it can use (the request's bytes, which no
tokenizer turns into more tokens, plus its ``max_tokens``); when the answer's ``usage``
arrives the reservation is corrected to the real total. Concurrent calls therefore cannot
all slip in under a limit they then overrun together: admitted tokens stay within the
limit unless an answer uses more than its bound (only without ``max_tokens``, past
``DEFAULT_COMPLETION``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import anyio

from modelyard.adapters.ratelimit.limiter import Decision, InProcessRateLimiter, RateLimiter
from modelyard.api.auth import Principal
from modelyard.api.errors import RateLimitExceeded
from modelyard.domain.catalog.models import Plan
from modelyard.domain.catalog.plans import PLAN_LIMITS, Limits

WINDOW_S = 60
# The completion a request without ``max_tokens`` is assumed to need until its usage says.
DEFAULT_COMPLETION = 1024


def plan_of(principal: Principal) -> Plan:
    """The principal's plan (an unknown name counts as free)."""
    try:
        return Plan(principal.plan)
    except ValueError:
        return Plan.FREE


def tokens_bucket(principal: Principal) -> str:
    """The tokens window of a key."""
    return f"tokens:{principal.key_id}"


def requests_bucket(principal: Principal) -> str:
    """The plan's requests window of a key (apart from the first dialect's flat one)."""
    return f"plan:{principal.key_id}"


def token_headers(decision: Decision) -> dict[str, str]:
    """The tokens window in headers, beside the requests' ``X-RateLimit-*``."""
    return {
        "X-RateLimit-Limit-Tokens": str(decision.limit),
        "X-RateLimit-Remaining-Tokens": str(decision.remaining),
        "X-RateLimit-Reset-Tokens": str(decision.reset_s),
    }


def reserve_of(body: Mapping[str, Any]) -> int:
    """An upper bound of the tokens a chat request can use."""
    prompt = len(json.dumps(body.get("messages", []), ensure_ascii=False).encode())
    completion = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_COMPLETION
    return prompt + (int(completion) if isinstance(completion, int) else DEFAULT_COMPLETION)


class Held:
    """One call's reservation of tokens, corrected once its usage is known."""

    def __init__(self, limiter: RateLimiter, bucket: str, reserved: int, at: float) -> None:
        self._limiter, self._bucket, self._reserved, self._at = limiter, bucket, reserved, at
        self._settled = False

    def _correct(self, amount: int) -> None:
        if amount:
            self._limiter.add(self._bucket, window_s=WINDOW_S, at=self._at, amount=amount)

    async def settle(self, usage: dict[str, Any]) -> None:
        """Replace the reservation with what the answer used."""
        if self._settled:
            return
        self._settled = True
        used = int(usage.get("total_tokens") or 0) or int(usage.get("prompt_tokens", 0)) + int(
            usage.get("completion_tokens", 0)
        )
        if isinstance(self._limiter, InProcessRateLimiter):
            self._correct(used - self._reserved)
        else:
            await anyio.to_thread.run_sync(self._correct, used - self._reserved)

    def release_unsettled(self) -> None:
        """A call that failed before its usage was known gives its reservation back."""
        if not self._settled:
            self._settled = True
            self._correct(-self._reserved)


class TokenLimits:
    """Admits inference calls within the plan's tokens per minute per key."""

    def __init__(self, limiter: RateLimiter, limits: Mapping[Plan, Limits] = PLAN_LIMITS) -> None:
        self._limiter, self._limits = limiter, limits

    def limit_of(self, principal: Principal) -> Limits:
        """The principal's plan's limits."""
        return self._limits[plan_of(principal)]

    def peek(self, principal: Principal) -> Decision:
        """The tokens window as it stands (counts nothing)."""
        limit = self.limit_of(principal).tokens_per_minute
        return self._limiter.hit(
            tokens_bucket(principal), limit=limit, window_s=WINDOW_S, now=time.time(), cost=0
        )

    def admit(self, principal: Principal, body: Mapping[str, Any]) -> Held:
        """Reserve the call's bound of tokens, or refuse with 429 RATE_LIMIT_EXCEEDED."""
        limit = self.limit_of(principal).tokens_per_minute
        reserved = min(reserve_of(body), limit)
        now = time.time()
        decision = self._limiter.hit(
            tokens_bucket(principal), limit=limit, window_s=WINDOW_S, now=now, cost=reserved
        )
        if not decision.allowed:
            headers = {**token_headers(decision), "Retry-After": str(max(1, decision.retry_s))}
            raise RateLimitExceeded(
                f"Over {limit} tokens/min for this key; retry after {headers['Retry-After']} s.",
                headers=headers,
            )
        return Held(self._limiter, tokens_bucket(principal), reserved, now)
