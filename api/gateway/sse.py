"""Server-sent events, served as ``text/event-stream`` whatever the route's own media type.

Litestar hands a returned response the handler's media type, and a handler that answers
JSON or a stream (``Any``) has JSON's: streams went out as ``application/json`` and SSE
clients that check the header refused them. This stream keeps its own.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
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
    first = await anext(events, None)

    async def replay() -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield first
            async for event in events:
                yield event
        finally:
            # A client gone mid-stream closes this; closing ``events`` closes the upstream.
            await events.aclose()

    return replay()
