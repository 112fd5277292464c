"""A streamed answer written by the engine thread itself, straight to the connection.

The replica's app runs under uvicorn (httptools, uvloop, as ``main`` runs it) in a thread
of this process, so that a test can put the server's event loop to sleep: the events of
an answer already under way keep coming while it sleeps. A client that stops reading
fills the socket; what the engine thread could not write goes back to the loop, and the
client, reading again, gets every event once and in order.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from modelyard.adapters.engines.backends import SimulatedBackend
from modelyard.adapters.engines.replica import Replica, build_app
from modelyard.adapters.engines.wire import wired

pytestmark = pytest.mark.integration
TOKEN = "wire-test-token"


@contextmanager
def _serving(backend: SimulatedBackend) -> Iterator[tuple[int, uvicorn.Server]]:
    """(port, server) of the replica's app over ``backend``, served in a thread."""
    config = uvicorn.Config(
        wired(build_app(Replica(backend), TOKEN)),
        host="127.0.0.1",
        port=0,  # the system's choice, read back once it listens
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield int(server.servers[0].sockets[0].getsockname()[1]), server
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _request(port: int, words: int, *, receive_buffer: int | None = None) -> socket.socket:
    """A connection that has asked for a streamed answer of ``words`` words."""
    body = json.dumps(
        {
            "model": "sim",
            "messages": [{"role": "user", "content": " ".join(f"w{n}" for n in range(words))}],
            "max_tokens": words,
            "stream": True,
        }
    ).encode()
    conn = socket.socket()
    if receive_buffer is not None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    conn.connect(("127.0.0.1", port))
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: replica\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    conn.sendall(head.encode() + body)
    return conn


class _Chunks:
    """An HTTP/1.1 chunked response read off a socket: its status line, then its chunks."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn, self.buffer = conn, b""
        head = self._until(b"\r\n\r\n")
        self.status = head.split(b"\r\n", 1)[0]
        assert b"transfer-encoding: chunked" in head.lower(), head

    def _until(self, mark: bytes) -> bytes:
        while mark not in self.buffer:
            data = self.conn.recv(1 << 16)
            assert data, "the connection closed mid-answer"
            self.buffer += data
        found, self.buffer = self.buffer.split(mark, 1)
        return found

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            data = self.conn.recv(1 << 16)
            assert data, "the connection closed mid-chunk"
            self.buffer += data
        taken, self.buffer = self.buffer[:size], self.buffer[size:]
        return taken

    def __iter__(self) -> Iterator[bytes]:
        """Each chunk's data, as it comes, to the last (empty) one."""
        while size := int(self._until(b"\r\n"), 16):
            yield self._take(size)
            assert self._take(2) == b"\r\n"
        assert self._take(2) == b"\r\n"


def _events(chunks: Iterator[bytes]) -> Iterator[str | None]:
    """Each event's content (None for one without), to ``[DONE]``."""
    rest = b""
    for data in chunks:
        *events, rest = (rest + data).split(b"\n\n")
        for event in events:
            assert event.startswith(b"data: "), event
            if event == b"data: [DONE]":
                return
            choices = json.loads(event[6:])["choices"]
            yield choices[0]["delta"].get("content") if choices else None
    raise AssertionError("the stream ended without [DONE]")


def test_events_keep_coming_while_the_event_loop_sleeps() -> None:
    backend = SimulatedBackend(model="sim", tokens_per_s=100)
    with _serving(backend) as (port, server), _request(port, 120) as conn:
        chunks = _Chunks(conn)
        assert chunks.status == b"HTTP/1.1 200 OK"
        loop = server.servers[0].get_loop()
        slept: list[float] = []

        def sleep() -> None:
            slept.append(time.monotonic())
            time.sleep(0.6)

        arrivals: list[tuple[float, str]] = []
        for content in _events(iter(chunks)):
            if content is None:
                continue
            arrivals.append((time.monotonic(), content))
            if len(arrivals) == 3:
                loop.call_soon_threadsafe(sleep)
    assert "".join(content for _, content in arrivals) == " ".join(f"w{n}" for n in range(120))
    assert slept, "the event loop never slept"
    # 100 tokens/s: about 40 come between 0.1 and 0.5 s into the loop's sleep; through the
    # loop, none would.
    asleep = [at for at, _ in arrivals if slept[0] + 0.1 < at < slept[0] + 0.5]
    assert len(asleep) >= 15, f"{len(asleep)} events came while the event loop slept"


def test_a_client_that_stops_reading_gets_every_event_in_order_when_it_reads_again() -> None:
    # More than the server's socket can hold: the engine thread's writes stop part-way.
    most_buffered = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    words = most_buffered * 2 // 150
    backend = SimulatedBackend(model="sim", context_window=4 * words)
    with _serving(backend) as (port, _), _request(port, words, receive_buffer=4096) as conn:
        chunks = _Chunks(conn)
        time.sleep(1.5)  # the engine has generated every word by now, most of them unread
        contents = [content for content in _events(iter(chunks)) if content is not None]
    assert len(contents) == words
    assert "".join(contents) == " ".join(f"w{n}" for n in range(words))
