"""One try of one delivery: a signed POST, its outcome, and whether to try again.

Retried: no answer (connection refused or reset, DNS failure, timeout), 5xx, 408 and 429.
Final: any other 4xx, and a destination refused by the operator's network rules. 2xx is
delivered (3xx is not followed and counts as final: a webhook URL should not move). At most
``MAX_RESPONSE_BYTES`` of the answer are read, so a receiver cannot make the dispatcher
hold a large body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

import httpx
import msgspec

from modelyard.adapters.webhooks.destinations import DestinationRefused, Network, check_destination

# Enough of an answer to show what a failing receiver said; the rest is never read.
MAX_RESPONSE_BYTES = 4096
RETRIED_4XX = frozenset({408, 429})


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What one try came to."""

    status_code: int | None
    error: str | None
    delivered: bool
    retry: bool
    duration_ms: int


async def post(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout_s: float,
    allowed: Sequence[Network],
) -> Outcome:
    """POST ``body`` to ``url``; never raises for what the receiver or the network does."""
    started = time.monotonic()

    def done(
        status: int | None, error: str | None, *, delivered: bool = False, retry: bool = False
    ) -> Outcome:
        elapsed = int((time.monotonic() - started) * 1000)
        return Outcome(status_code=status, error=error, delivered=delivered, retry=retry, duration_ms=elapsed)

    try:
        await asyncio.to_thread(check_destination, url, allowed)
    except DestinationRefused as exc:
        return done(None, exc.message)
    try:
        async with asyncio.timeout(timeout_s):
            async with client.stream("POST", url, content=body, headers=dict(headers)) as response:
                said = await _bounded(response)
    except TimeoutError:
        return done(None, f"no answer within {timeout_s:g} s", retry=True)
    except httpx.HTTPError as exc:
        return done(None, f"{type(exc).__name__}: {exc}"[:300], retry=True)
    status = response.status_code
    if 200 <= status < 300:
        return done(status, None, delivered=True)
    retry = status >= 500 or status in RETRIED_4XX
    return done(status, f"HTTP {status}: {said}"[:300], retry=retry)


async def _bounded(response: httpx.Response) -> str:
    read = b""
    async for chunk in response.aiter_raw():
        read += chunk
        if len(read) >= MAX_RESPONSE_BYTES:
            break
    return read[:MAX_RESPONSE_BYTES].decode(errors="replace")
