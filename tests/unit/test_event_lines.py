"""Server-sent event lines read as they arrive, whatever the pieces the network cuts them in.

A loopback server writes a chunked response in pieces, each flushed and apart in time, so
the client's reads end, as a rule, where the pieces do: inside a line, between a line's
``\\r`` and ``\\n``, between an event's two newlines, or with several events at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from modelyard.adapters.engines.upstream import LINE_LIMIT, event_lines


@asynccontextmanager
async def _serving(pieces: list[bytes]) -> AsyncIterator[str]:
    """The URL of a server that answers once with ``pieces``, one HTTP chunk each."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
        writer.write(b"transfer-encoding: chunked\r\n\r\n")
        for piece in pieces:
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.02)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


async def _lines(pieces: list[bytes]) -> list[bytes]:
    async with _serving(pieces) as url, aiohttp.ClientSession() as session, session.get(url) as response:
        return [line async for line in event_lines(response.content)]


def test_lines_cut_anywhere_come_out_whole() -> None:
    pieces = [
        b'data: {"a": 1}\n\ndata: {"b"',  # a whole event, then half a line
        b": 2}\r",  # the line's end, cut between \r and \n
        b"\n",
        b'\n: a comment\n\ndata: {"c": 3}\n',  # the blank line, a comment, an event's first newline
        b"\ndata: [DONE]",  # its second, and a last line with no newline at all
    ]
    lines = asyncio.run(_lines(pieces))
    assert lines == [b'data: {"a": 1}', b'data: {"b": 2}', b": a comment", b'data: {"c": 3}', b"data: [DONE]"]


def test_a_line_without_end_is_refused_past_the_limit() -> None:
    pieces = [b"data: " + b"x" * (LINE_LIMIT // 2)] * 3
    with pytest.raises(ValueError, match="over"):
        asyncio.run(_lines(pieces))
