"""Upstream providers: any OpenAI-compatible server elsewhere, as a routed chat's target.

An upstream is a name, a base URL (the one an ``openai`` client would take, ending in
``/v1`` for most), its API key, the models it is routed for (``*`` for any), and what a
million tokens cost there, in micro-dollars. The operator configures some for every
account (``MODELYARD_UPSTREAMS``, a JSON list); an account adds its own (kept in the state
store). The key is a secret: never in a repr, a log line or an answer (only its hint).

``UpstreamClient`` calls one with aiohttp (as the forwarder calls replicas) and says why it
could not when it could not: a connection refused, a timeout, a 429 or a 5xx is
``UpstreamFailed`` and the route falls back to its next target.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import aiohttp
import msgspec
from msgspec import Meta

log = logging.getLogger(__name__)

Name = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Url = Annotated[str, Meta(min_length=8, max_length=2048, pattern=r"^https?://")]
Price = Annotated[int, Meta(ge=0, le=10**12)]
# Statuses after which another target may well answer: rate limited, or the server failed.
FALL_BACK_ON = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MICROS_PER_MILLION_TOKENS = 1_000_000
# The longest line of server-sent events taken from an upstream or a replica.
LINE_LIMIT = 1 << 20


class Upstream(msgspec.Struct, frozen=True, kw_only=True):
    """One OpenAI-compatible provider a route may send a chat to."""

    name: Name
    base_url: Url
    api_key: Annotated[str, Meta(max_length=4096)] = ""
    models: Annotated[tuple[Annotated[str, Meta(min_length=1, max_length=256)], ...], Meta(min_length=1)] = (
        "*",
    )
    input_price_micros_per_mtok: Price = 0
    output_price_micros_per_mtok: Price = 0

    def __repr__(self) -> str:
        return f"Upstream(name={self.name!r}, base_url={self.base_url!r}, models={self.models!r})"

    def serves(self, model: str) -> bool:
        """Whether the route for ``model`` goes through this upstream."""
        return "*" in self.models or model in self.models

    def cost_micros(self, usage: dict[str, Any]) -> int:
        """What the call cost there, rounded up to the micro-dollar."""
        spent = (
            int(usage.get("prompt_tokens", 0)) * self.input_price_micros_per_mtok
            + int(usage.get("completion_tokens", 0)) * self.output_price_micros_per_mtok
        )
        return -(-spent // MICROS_PER_MILLION_TOKENS)

    @property
    def key_hint(self) -> str:
        """The key as it may be shown: its first characters."""
        return f"{self.api_key[:6]}…" if self.api_key else ""


def operator_upstreams(text: str) -> list[Upstream]:
    """``MODELYARD_UPSTREAMS`` (a JSON list of upstreams) parsed; empty means none.

    A value that does not parse is a ``ValueError`` naming the problem, not the value (it
    holds keys).
    """
    if not text.strip():
        return []
    try:
        upstreams = msgspec.json.decode(text.encode(), type=list[Upstream])
    except msgspec.ValidationError as exc:
        raise ValueError(f"MODELYARD_UPSTREAMS: {exc}") from None
    except msgspec.DecodeError:
        raise ValueError("MODELYARD_UPSTREAMS is not a JSON list of upstreams") from None
    names = [u.name for u in upstreams]
    if len(set(names)) != len(names):
        raise ValueError("MODELYARD_UPSTREAMS names an upstream twice")
    return upstreams


class UpstreamFailed(Exception):
    """The upstream did not answer usefully; the route may try its next target."""

    def __init__(self, status: int, reason: str, answer: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.answer = status, reason, answer

    @property
    def final(self) -> bool:
        """The upstream refused the request itself (a 4xx other than those worth retrying
        elsewhere): another target would refuse it too, so the client gets this answer."""
        return self.answer is not None


class UpstreamClient:
    """Calls upstreams' ``/chat/completions``; one connection pool for all of them."""

    def __init__(self, timeout_s: float) -> None:
        # No total: a long answer may stream for minutes; silence for ``timeout_s`` is a failure.
        self._timeout = aiohttp.ClientTimeout(total=None, connect=min(5.0, timeout_s), sock_read=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use, inside the serving event loop, as aiohttp wants.
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()

    @asynccontextmanager
    async def _answering(
        self, upstream: Upstream, body: dict[str, Any]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The upstream's response; a failure worth falling back on is ``UpstreamFailed``."""
        headers = {"Authorization": f"Bearer {upstream.api_key}"} if upstream.api_key else {}
        url = f"{upstream.base_url.rstrip('/')}/chat/completions"
        try:
            async with self._client().post(url, json=body, headers=headers) as response:
                if response.status in FALL_BACK_ON:
                    raise UpstreamFailed(response.status, f"answered {response.status}")
                yield response
        except TimeoutError:
            raise UpstreamFailed(504, "did not answer in time") from None
        except aiohttp.ClientError as exc:
            # The exception's text may hold the URL, never the key: logged, and named by kind.
            log.warning("upstream %s unreachable: %r", upstream.name, exc)
            raise UpstreamFailed(502, f"unreachable ({type(exc).__name__})") from None

    async def complete(self, upstream: Upstream, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One whole chat completion: (status, JSON body)."""
        async with self._answering(upstream, body) as response:
            try:
                answer = await response.json(content_type=None)
            except (ValueError, aiohttp.ClientError) as exc:
                raise UpstreamFailed(
                    502, f"answered something other than JSON ({type(exc).__name__})"
                ) from None
            status = response.status
        if not isinstance(answer, dict):
            raise UpstreamFailed(502, "answered something other than a JSON object")
        return status, answer

    async def stream(self, upstream: Upstream, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """The upstream's server-sent event lines; an error answer is ``UpstreamFailed`` first."""
        async with self._answering(upstream, body) as response:
            if response.status != 200:
                answer = await response.json(content_type=None)
                said = answer if isinstance(answer, dict) else {}
                raise UpstreamFailed(response.status, f"answered {response.status}", said)
            try:
                async for line in event_lines(response.content):
                    yield line
            except TimeoutError:
                raise UpstreamFailed(504, "stopped answering mid-stream") from None


async def event_lines(body: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The lines of a server-sent event stream that are not blank, stripped, as they come.

    Read what has arrived in one go, not a line at a time: each of aiohttp's reads resumes
    its parser and its transport, and an event is two lines (its data, then a blank one),
    so one token cost the gateway two of each. A line over ``LINE_LIMIT`` is a ValueError.
    """
    rest = b""
    async for data in body.iter_any():
        lines = (rest + data).split(b"\n") if rest else data.split(b"\n")
        rest = lines.pop()
        if len(rest) > LINE_LIMIT:
            raise ValueError(f"a server-sent event line over {LINE_LIMIT} bytes")
        for line in lines:
            if stripped := line.strip():
                yield stripped
    if stripped := rest.strip():
        yield stripped
