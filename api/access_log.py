"""One access line per HTTP request, and the request id that ties the line to the answer.

A small ASGI middleware (the outermost of the app's list): it logs method, path, status,
duration in milliseconds and the request id on the ``modelyard.access`` logger once the
answer is sent. The id is the client's ``X-Request-ID`` when it looks like one, else made
up here; either way it is returned on the answer. Nothing else of the request is logged:
no query string, no header, so never a key.
"""

from __future__ import annotations

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
                log.info("%s %s %d %.1fms id=%s", method, scope["path"], status, elapsed_ms, rid.decode())
