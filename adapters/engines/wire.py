"""The connection under a streamed answer, for the engine thread to write its events to.

A streamed token used to reach the client through the replica's event loop: the engine
thread handed it over, and the loop woke up to write it. On 2 cores that wake-up (about
0.2 ms of CPU a token, and the GIL passed between the two threads each time) came out of
llama.cpp's own threads. Once the response has started and uvicorn has nothing left to
write, the engine thread writes each event to the socket itself, as the HTTP chunk
uvicorn would have made of it, and the loop stays asleep.

Only under uvicorn's httptools protocol, whose response cycle is the ``send`` it hands the
application (``wired``); under any other server a request has no ``Wire`` and its events
go through the loop as before.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from litestar.types import Receive, Send
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

# Where a request's Wire is, in its scope's extensions.
WIRE = "modelyard.wire"
Asgi = Callable[[Any, Receive, Send], Awaitable[None]]


class Wire:
    """The connection a response is written on, as uvicorn's response cycle holds it."""

    def __init__(self, cycle: RequestResponseCycle) -> None:
        self._cycle = cycle

    def take(self) -> int | None:
        """A duplicate of the socket's descriptor (the caller closes it) to write the rest of
        the body on as HTTP chunks; None if not now: the body is not chunked, the client is
        gone, or uvicorn still has bytes to write before them."""
        cycle = self._cycle
        if cycle.chunked_encoding is not True or cycle.disconnected:
            return None
        if cycle.transport.get_write_buffer_size():
            return None
        sock = cycle.transport.get_extra_info("socket")
        return None if sock is None else os.dup(sock.fileno())

    def write(self, data: bytes) -> None:
        """Write ``data`` as it is, after what uvicorn has written (on the event loop)."""
        if not self._cycle.disconnected:
            self._cycle.transport.write(data)


def wire_of(scope: Mapping[str, Any]) -> Wire | None:
    """The request's ``Wire``, if ``wired`` gave it one."""
    found = (scope.get("extensions") or {}).get(WIRE)
    return found if isinstance(found, Wire) else None


def wired(app: Asgi) -> Asgi:
    """``app`` with each HTTP request's ``Wire`` in its scope's extensions, under ``WIRE``."""

    async def call(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        cycle = getattr(send, "__self__", None)
        if scope["type"] == "http" and isinstance(cycle, RequestResponseCycle):
            scope["extensions"] = {**(scope.get("extensions") or {}), WIRE: Wire(cycle)}
        await app(scope, receive, send)

    return call


def write_chunk(fd: int, data: bytes) -> bytes:
    """Write ``data`` on ``fd`` as one HTTP chunk, without waiting: what could not be written
    at once (nothing when all was). An OSError is the connection gone."""
    framed = b"%x\r\n%s\r\n" % (len(data), data)
    try:
        written = os.write(fd, framed)
    except BlockingIOError:
        return framed
    return framed[written:]
