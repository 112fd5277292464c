"""Server-sent events, served as ``text/event-stream`` whatever the route's own media type.

Litestar hands a returned response the handler's media type, and a handler that answers
JSON or a stream (``Any``) has JSON's: streams went out as ``application/json`` and SSE
clients that check the header refused them. This stream keeps its own.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import Any

from litestar.response import Stream

EVENT_STREAM = "text/event-stream"


class EventStream(Stream):
    """A ``Stream`` whose ``Content-Type`` is always ``text/event-stream``."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        """The ASGI response, with the event-stream media type over the handler's."""
        kwargs["media_type"] = EVENT_STREAM
        # Proxies must not hold the events back to buffer them.
        kwargs["headers"] = {**(kwargs.get("headers") or {}), "Cache-Control": "no-cache"}
        return super().to_asgi_response(*args, **kwargs)


async def opened(events: AsyncGenerator[bytes]) -> AsyncIterator[bytes]:
    """``events`` once their first has come: a refusal before it is raised here, in the
    handler, and answered with its status instead of an empty stream under a 200."""
    return _Opened(await anext(events, None), events)


class _Opened:
    """``events`` with the first taken already: that one, then the rest straight from
    ``events``, with no generator of its own stepped per event. A client gone mid-stream
    drops this, and with it ``events``, which closes the upstream as it is finalized."""

    def __init__(self, first: bytes | None, events: AsyncGenerator[bytes]) -> None:
        self._first, self._events = first, events

    def __aiter__(self) -> _Opened:
        return self

    def __anext__(self) -> Awaitable[bytes]:
        first, self._first = self._first, None
        return _now(first) if first is not None else self._events.__anext__()

    async def aclose(self) -> None:
        """Close ``events`` (and the upstream with them)."""
        await self._events.aclose()


async def _now(value: bytes) -> bytes:
    return value
