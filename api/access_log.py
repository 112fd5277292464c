"""One access line per HTTP request, and the request id that ties the line to the answer.

A small ASGI middleware (the outermost of the app's list): it logs method, path, status,
duration in milliseconds and the request id on the ``modelyard.access`` logger once the
answer is sent (handed to logging in batches, see ``_Lines``). The id is the client's
``X-Request-ID`` when it looks like one, else made up here; either way it is returned on
the answer. Nothing else of the request is logged: no query string, no header, so never
a key.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import re
import time

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("modelyard.access")
HEADER = b"x-request-id"
# A client's id is passed through only if it is short and plain, so no caller can write
# arbitrary text (a forged log line, a terminal escape) into the log.
_PLAIN_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def request_id(scope: Scope) -> bytes:
    """The request's id: its ``X-Request-ID`` header if plain enough, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == HEADER and _PLAIN_ID.fullmatch(value):
            return bytes(value)
    # 128 random bits in hex, like a uuid4's; os.urandom costs a fifth of uuid.uuid4() here.
    return os.urandom(16).hex().encode()


class AccessLog:
    """Wraps an ASGI app; logs one line per HTTP request and returns its id on the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request, stamping the id on the answer, then log the access line."""
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        rid = request_id(scope)
        started = time.perf_counter()
        status = 500  # what the client sees if the app fails before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (HEADER, rid)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if log.isEnabledFor(logging.INFO):
                elapsed_ms = (time.perf_counter() - started) * 1000
                _LINES.add(time.time(), (method, scope["path"], status, elapsed_ms, rid.decode()))


class _Lines:
    """Access lines waiting to be logged, handed to logging a batch at a time.

    Each line is still one record, stamped with its request's own time, through the
    configured handlers; only the hand-over is batched. Logging a record from the request
    path cost about 45 us of the server's CPU per request (the logging machinery run cold,
    between requests), a quarter of a ``/health`` answer; run back to back every
    ``FLUSH_S`` from the event loop it costs a few. A process that dies loses at most the
    last ``FLUSH_S`` of lines; one that exits flushes them.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[float, tuple[object, ...]]] = []

    def add(self, created: float, args: tuple[object, ...]) -> None:
        """Queue one line (from the event loop); the first of a batch schedules its flush."""
        if not self._pending:
            asyncio.get_running_loop().call_later(FLUSH_S, self.flush)
        self._pending.append((created, args))

    def flush(self) -> None:
        """Log every queued line, each at the time its request ended."""
        batch, self._pending = self._pending, []
        for created, args in batch:
            record = log.makeRecord(log.name, logging.INFO, __file__, 0, LINE, args, None)
            record.created, record.msecs = created, (created - int(created)) * 1000
            log.handle(record)


# Short enough that a line shows at once to a person, long enough to batch under load.
FLUSH_S = 0.05
LINE = "%s %s %d %.1fms id=%s"
_LINES = _Lines()
atexit.register(_LINES.flush)


def flush_lines() -> None:
    """Log the queued access lines now (the app's shutdown does; so may a test)."""
    _LINES.flush()
