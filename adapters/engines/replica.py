"""A replica process: one model behind the OpenAI chat API on a loopback port.

Run as ``python -m modelyard.adapters.engines.replica --backend llamacpp --model ID --path
FILE --port N --parent-pid PID --log-file FILE`` (or ``--backend simulated``), with its
token in ``MODELYARD_REPLICA_TOKEN``. It serves ``POST /v1/chat/completions`` (streamed as
server-sent events ending in ``data: [DONE]``, or whole), ``GET /health`` and ``GET
/metrics`` in Prometheus text with vLLM's metric names, so one parser reads every engine.
A client that disconnects mid-stream cancels its generation.

Every call must carry the token (``Authorization: Bearer …``): 401 without one, 403 with
another. A port is only an address; the token is what tells the gateway it reached the
replica it meant, not a process that took the port after that replica was gone. The
replica gives up when the server that started it is gone (``lifeline``), and its log
rotates (``LOG_MAX_BYTES`` a file, ``LOG_BACKUPS`` old ones).
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from logging.handlers import RotatingFileHandler
from queue import SimpleQueue
from typing import Any

import msgspec
from litestar import Litestar, MediaType, Request, get, post
from litestar.exceptions import HTTPException
from litestar.response import Response, Stream
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse
from litestar.types import Receive, Scope, Send

from modelyard.adapters.engines import lifeline
from modelyard.adapters.engines.backends import Backend, ContextOverflow, Refused, SimulatedBackend
from modelyard.adapters.engines.metrics import MEDIA_TYPE, ReplicaMetrics
from modelyard.adapters.engines.wire import Wire, wire_of, wired, write_chunk
from modelyard.adapters.logs import LINE_FORMAT, configure_logging
from modelyard.settings import load_log_settings, load_replica_settings

# Named, not __name__: run with -m this module is __main__.
log = logging.getLogger("modelyard.adapters.engines.replica")
_DONE = object()
EVENT_STREAM = "text/event-stream"
# An engine chunk as the bytes of its server-sent event; None for one not sent.
Encode = Callable[[dict[str, Any]], bytes | None]
# The backends of models that are not chat (media_replica.py).
MEDIA_BACKENDS = ("embedding", "transcription", "speech")
# A replica's log is bounded: this much a file, and this many older files beside it.
LOG_MAX_BYTES = 1 << 20
LOG_BACKUPS = 2


def _error(status: int, message: str, kind: str = "invalid_request_error") -> Response[Any]:
    """An OpenAI-style error answer; every refusal is logged with its reason (a gateway 502
    or 400 is then traceable to the replica's own line)."""
    log.log(logging.ERROR if status >= 500 else logging.WARNING, "refused %d %s: %s", status, kind, message)
    body = {"error": {"message": message, "type": kind, "code": kind}}
    return Response(body, status_code=status, media_type=MediaType.JSON)


def _failed(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Any exception a handler raised: a routing refusal keeps its status, an engine failure
    is a 500 whose traceback is logged."""
    if isinstance(exc, HTTPException):
        return _error(
            exc.status_code,
            exc.detail,
            "not_found_error" if exc.status_code == 404 else "invalid_request_error",
        )
    log.exception("engine failed on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(500, f"The engine failed: {type(exc).__name__}.", "server_error")


def _validate(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The body must be a JSON object."
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array."
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        return "Each message needs a 'role'."
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        return "'max_tokens' must be a positive integer."
    return None


class Busy(Exception):
    """The engine's queue is full, or a request waited for the engine past the bound."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Admission:
    """Who gets the engine: ``slots`` requests at once, the next ``depth`` waiting in arrival
    order for at most ``timeout_s`` each; beyond that, ``Busy`` (a 503 with Retry-After)."""

    def __init__(self, slots: int, depth: int, timeout_s: float) -> None:
        self.slots, self.depth, self.timeout_s = slots, depth, timeout_s
        self._free = asyncio.Semaphore(slots)
        self.waiting = 0
        # Seconds one request holds the engine, smoothed: what Retry-After is estimated from.
        self._held_s = 1.0

    def retry_after_s(self) -> int:
        """About when the queue ahead of a new request will have drained, in whole seconds."""
        return max(1, min(60, math.ceil(self._held_s * (self.waiting + 1))))

    async def enter(self) -> float:
        """Wait for the engine; the seconds waited."""
        if self._free.locked() and self.waiting >= self.depth:
            raise Busy(f"The engine is busy: {self.waiting} requests already wait.", self.retry_after_s())
        began = time.perf_counter()
        self.waiting += 1
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._free.acquire()
        except TimeoutError:
            raise Busy(
                f"The engine stayed busy for {self.timeout_s:g} s; retry later.", self.retry_after_s()
            ) from None
        finally:
            self.waiting -= 1
        return time.perf_counter() - began

    def leave(self, held_s: float) -> None:
        """The engine is free for the next request."""
        self._held_s = 0.8 * self._held_s + 0.2 * held_s
        self._free.release()


class EngineThreads:
    """Threads that live as long as the replica and run one generation at a time each.

    llama.cpp computes on an OpenMP team that belongs to the thread calling it: a new
    thread per request built a new team before its first token (about 10 ms of every
    answer's TTFT on 2 cores). Daemons, so a generation never holds the process's exit.
    """

    def __init__(self, count: int) -> None:
        self._jobs: SimpleQueue[Callable[[], None]] = SimpleQueue()
        for n in range(count):
            threading.Thread(target=self._work, name=f"engine-{n}", daemon=True).start()

    def run(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the next free thread."""
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except Exception:  # the thread outlives a job's failure; the next one needs it
                log.exception("an engine job failed")


def _thread_each(job: Callable[[], None]) -> None:
    threading.Thread(target=job, daemon=True).start()


class Replica:
    """The state of one replica process: its backend, who may use it, and its counters.

    With ``admission`` requests take the engine in turn (llama.cpp generates one at a
    time) on the replica's engine threads, one a slot; without, every request starts at
    once on a thread of its own (the simulated engine, which mostly sleeps).
    """

    def __init__(self, backend: Backend, admission: Admission | None = None) -> None:
        self.backend = backend
        self.admission = admission
        self.metrics = ReplicaMetrics(model=backend.model)
        self._start = _thread_each if admission is None else EngineThreads(admission.slots).run

    async def chunks(self, request: dict[str, Any]) -> AsyncGenerator[dict[str, Any]]:
        """Generate in a worker thread once admitted; stop it if the consumer goes away."""
        started = time.perf_counter()
        done = await self._admitted()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        first, finished = True, False
        first_at = started
        self._start(self._job(request, cancel, put=put, fail=put, end=lambda: put(_DONE), done=done))
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, Exception):
                    raise item
                if first:
                    first_at = time.perf_counter()
                    self.metrics.started(first_at - started)
                    first = False
                yield item
            finished = True
        finally:
            cancel.set()
            self.metrics.left(started=not first, completed=finished)
            if finished and not first:
                self.metrics.decoded(time.perf_counter() - first_at)

    async def stream(self, request: dict[str, Any], encode: Encode) -> Outlet:
        """Generate once admitted, each chunk ``encode``d on the engine thread and sent from
        the outlet; returned once the first event is in it, so a refusal before that (the
        engine's, or ``Busy``) is raised here and answered with a status."""
        started = time.perf_counter()
        done = await self._admitted()
        outlet = Outlet(asyncio.get_running_loop())

        def put(chunk: dict[str, Any]) -> None:
            if (data := encode(chunk)) is not None:
                outlet.put(data)

        self._start(self._job(request, outlet.cancel, put=put, fail=outlet.fail, end=outlet.end, done=done))
        try:
            await outlet.first
        except BaseException:
            outlet.cancel.set()
            self.metrics.left(started=False, completed=False)
            raise
        first_at = time.perf_counter()
        self.metrics.started(first_at - started)

        def sent(completed: bool) -> None:
            self.metrics.left(started=True, completed=completed)
            if completed:
                self.metrics.decoded(time.perf_counter() - first_at)

        outlet.sent = sent
        return outlet

    async def _admitted(self) -> Callable[[float], None] | None:
        """Wait for the engine; what to call when it is left (None: every request starts at once)."""
        self.metrics.queued()
        if self.admission is None:
            return None
        try:
            waited = await self.admission.enter()
        except Busy:
            self.metrics.refused()
            raise
        except BaseException:
            self.metrics.left(started=False, completed=False)
            raise
        self.metrics.admitted(waited)
        # The next request is let in when the engine thread is done, not when the client is:
        # a client gone mid-answer leaves the engine a token (or a prompt) to finish first.
        return self.admission.leave

    def _job(
        self,
        request: dict[str, Any],
        cancel: threading.Event,
        *,
        put: Callable[[dict[str, Any]], None],
        fail: Callable[[Exception], None],
        end: Callable[[], None],
        done: Callable[[float], None] | None,
    ) -> Callable[[], None]:
        """The engine thread's work on ``request``: each chunk to ``put``, a failure to ``fail``,
        then ``end``; ``done`` (on the event loop) with the seconds it held the engine."""
        loop = asyncio.get_running_loop()

        def produce() -> None:
            self.metrics.engine_began()
            began = time.perf_counter()
            try:
                for chunk in self.backend.generate(request, cancel):
                    self.metrics.engine_chunk()
                    put(chunk)
            except Exception as exc:  # handed to the consumer, which answers with it
                fail(exc)
            finally:
                self.metrics.engine_ended()
                if done is not None:
                    loop.call_soon_threadsafe(done, time.perf_counter() - began)
            end()

        return produce


class Outlet:
    """A streamed answer's server-sent events on their way from the engine thread to the client.

    The engine thread encodes each event and hands the bytes over with one
    ``call_soon_threadsafe``; on the event loop one coroutine sends what has come, as it
    comes. Before, each token passed an ``asyncio.Queue`` and four generators, and on two
    cores that event-loop work comes out of llama.cpp's own threads.

    Given the connection's ``wire``, the loop hands the socket to the engine thread the first
    time it has sent all there was and nothing is on its way to it; from then on the engine
    thread writes each event itself (wire.py). What the socket does not take at once goes
    back to the loop, which writes it and sends the rest.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.cancel = threading.Event()
        # Done when the first event is in; the engine's refusal before it (answered with a status).
        self.first: asyncio.Future[None] = loop.create_future()
        # Done when the engine is; its failure after the first event, if it failed.
        self.ended: asyncio.Future[None] = loop.create_future()
        # Told once the answer is sent (True) or cut off (False).
        self.sent: Callable[[bool], None] = lambda completed: None
        # Events not sent yet, and what wakes the sender when one comes.
        self._held: list[bytes] = []
        self._wake: asyncio.Future[None] | None = None
        # The connection, and whether its socket is still to be handed to the engine thread.
        self.wire: Wire | None = None
        self._handing = True
        # The socket the engine thread writes on, and the engine thread's calls the loop has
        # not run yet (the socket is handed over only when there are none); both under the lock.
        self._fd: int | None = None
        self._pending = 0
        self._lock = threading.Lock()

    # Called on the engine thread.

    def put(self, data: bytes) -> None:
        """Send ``data`` after what came before it."""
        with self._lock:
            fd = self._fd
            if fd is None:
                self._call(self._put, data)
                return
        try:
            rest = write_chunk(fd, data)
        except OSError:  # the client is gone
            self.cancel.set()
            rest = b""
        else:
            if not rest:
                return
        with self._lock:
            self._fd = None
            if rest and self.wire is not None:  # always: the socket came from it
                self._call(self._written, self.wire, rest)
        os.close(fd)

    def fail(self, exc: Exception) -> None:
        """The engine failed with ``exc``."""
        with self._lock:
            self._call(self._fail, exc)

    def end(self) -> None:
        """The engine is done: the stream's last event follows what came before."""
        with self._lock:
            fd, self._fd = self._fd, None
            self._call(self._end)
        if fd is not None:
            os.close(fd)

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        """``callback(*args)`` on the loop, counted until it has run; under the lock."""
        self._pending += 1
        self._loop.call_soon_threadsafe(callback, *args)

    # On the event loop.

    async def run(self, send: Send, receive: Receive) -> None:
        """Send the events as they come (the response started), then end the body; a client
        gone cancels the engine."""
        watch = asyncio.ensure_future(self._watch(receive))
        completed = False
        try:
            while self._held or not self.ended.done():
                if not self._held:
                    if self._handing and self.wire is not None:
                        self._hand_over(self.wire)
                    self._wake = self._loop.create_future()
                    await self._wake
                    continue
                data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
                self._held.clear()
                await send({"type": "http.response.body", "body": data, "more_body": True})
            self.ended.result()  # the engine's failure mid-answer, raised
            completed = not self.cancel.is_set()  # else the client left before the end
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.cancel.set()
            watch.cancel()
            self.sent(completed)

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.cancel.set()

    def _hand_over(self, wire: Wire) -> None:
        """Give the engine thread the socket, if all it was given is sent and nothing else is
        on its way (else the engine thread's next event would overtake them)."""
        with self._lock:
            if self._pending or self.ended.done():
                return
            self._fd = wire.take()
            self._handing = self._fd is None

    def _ran(self) -> None:
        with self._lock:
            self._pending -= 1

    def _written(self, wire: Wire, rest: bytes) -> None:
        """Write what the engine thread could not; its events come through the loop from now."""
        self._ran()
        wire.write(rest)

    def _put(self, data: bytes) -> None:
        self._ran()
        self._hold(data)

    def _hold(self, data: bytes) -> None:
        self._held.append(data)
        if not self.first.done():
            self.first.set_result(None)
        self._woken()

    def _fail(self, exc: Exception) -> None:
        self._ran()
        done = self.ended if self.first.done() else self.first
        if not done.done():
            done.set_exception(exc)
        self._woken()

    def _end(self) -> None:
        self._ran()
        if not self.ended.done():
            self._hold(b"data: [DONE]\n\n")
            self.ended.set_result(None)
        self._woken()

    def _woken(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)


class OutletStream(Stream):
    """The response of a streamed answer: its headers, then its outlet's events."""

    def __init__(self, outlet: Outlet) -> None:
        super().__init__((), media_type=EVENT_STREAM)
        self.outlet = outlet

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:
        """The headers as Litestar's streaming response has them, the body from the outlet."""
        streaming = super().to_asgi_response(*args, **kwargs)
        return _OutletResponse(
            self.outlet, iterator=(), encoded_headers=streaming.encode_headers(), status_code=200
        )


class _OutletResponse(ASGIStreamingResponse):
    __slots__ = ("outlet",)

    def __init__(self, outlet: Outlet, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outlet = outlet

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The headers, then the events; a response that never started cancels the engine."""
        try:
            await self.start_response(send)
        except BaseException:
            self.outlet.cancel.set()
            self.outlet.sent(False)
            raise
        self.outlet.wire = wire_of(scope)
        await self.outlet.run(send, receive)


def token_check(token: str) -> Callable[[Request[Any, Any, Any]], Awaitable[Response[Any] | None]]:
    """The hook run before every route: a call without ``token`` is refused (401 none, 403 another)."""
    expected = token.encode()

    async def check(request: Request[Any, Any, Any]) -> Response[Any] | None:
        given = request.headers.get("authorization")
        if not given:
            return _error(
                401, "This replica answers only the server that started it.", "authentication_error"
            )
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), expected):
            return _error(403, "This call was meant for another replica.", "permission_error")
        return None

    return check


def build_app(replica: Replica, token: str) -> Litestar:
    """The replica's HTTP API, answering only calls that carry ``token``."""
    if not token:
        raise ValueError("a replica needs a token to check; refusing to serve every caller")

    @get("/health", sync_to_thread=False)
    def health() -> dict[str, str]:
        return {"status": "ok", "model": replica.backend.model}

    @get("/metrics", sync_to_thread=False, media_type=MEDIA_TYPE)
    def metrics() -> str:
        return replica.metrics.render()

    @get("/v1/models", sync_to_thread=False)
    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": replica.backend.model, "object": "model", "owned_by": "modelyard"}],
        }

    @post("/v1/chat/completions", status_code=200)
    async def chat(request: Request[Any, Any, Any]) -> Response[Any] | Stream:
        try:
            body = msgspec.json.decode(await request.body())
        except msgspec.DecodeError:
            return _error(400, "The body is not valid JSON.")
        return await _answer(replica, body)

    return Litestar(
        route_handlers=[health, metrics, models, chat],
        before_request=token_check(token),
        exception_handlers={Exception: _failed},
        logging_config=None,  # configure_logging in main() owns the process's logging
    )


async def _answer(replica: Replica, body: Any) -> Response[Any] | Stream:
    """One chat completion request: a 400 for what cannot be served, else the answer or its stream."""
    problem = _validate(body)
    if problem:
        return _error(400, problem)
    window = replica.backend.context_window
    if replica.backend.count_tokens(body) + int(body.get("max_tokens") or 0) > window:
        message = f"This model's maximum context length is {window} tokens; the prompt does not fit."
        return _error(400, message, "context_length_exceeded")
    head = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": str(body.get("model") or replica.backend.model),
    }
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        try:
            outlet = await replica.stream(body, _encoder(replica, head, include_usage=include_usage))
        except (ContextOverflow, Refused, Busy) as exc:
            return _refusal(exc)
        return OutletStream(outlet)
    pieces = replica.chunks(body)
    try:
        first = await anext(pieces)
    except (ContextOverflow, Refused, Busy) as exc:
        return _refusal(exc)
    return Response(await _whole(replica, first, pieces, head))


def _refusal(exc: ContextOverflow | Refused | Busy) -> Response[Any]:
    """The answer to a refusal before the first piece: it comes before the status line, so
    an engine's refusal is still a 400, and a full queue a 503."""
    if isinstance(exc, ContextOverflow):
        return _error(400, str(exc), "context_length_exceeded")
    if isinstance(exc, Refused):
        return _error(400, str(exc))
    # Not the engine's failure: the caller (the gateway) may try another replica or later.
    log.info("refused 503: %s", exc)
    body = {"error": {"message": str(exc), "type": "server_error", "code": "engine_busy"}}
    headers = {"Retry-After": str(exc.retry_after_s)}
    return Response(body, status_code=503, media_type=MediaType.JSON, headers=headers)


async def _chain(first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    yield first
    async for piece in rest:
        yield piece


def _encoder(replica: Replica, head: dict[str, Any], *, include_usage: bool) -> Encode:
    """An engine chunk as a server-sent event (None for usage the client did not ask for);
    run on the engine thread."""
    opening = True

    def encode(piece: dict[str, Any]) -> bytes | None:
        nonlocal opening
        if "usage" in piece:
            replica.metrics.finished(piece["usage"])
            if not include_usage:
                return None
            out = head | {"choices": [], "usage": piece["usage"]}
        else:
            delta = {"role": "assistant", **piece["delta"]} if opening else piece["delta"]
            opening = False
            choice = {"index": 0, "delta": delta, "finish_reason": piece["finish_reason"], "logprobs": None}
            out = head | {"choices": [choice]}
        return b"data: " + msgspec.json.encode(out) + b"\n\n"

    return encode


async def _whole(
    replica: Replica, first: dict[str, Any], pieces: AsyncIterator[dict[str, Any]], head: dict[str, Any]
) -> dict[str, Any]:
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish, usage = "stop", {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    async for piece in _chain(first, pieces):
        if "usage" in piece:
            usage = piece["usage"]
            continue
        content.append(piece["delta"].get("content") or "")
        for fragment in piece["delta"].get("tool_calls") or []:
            merge_tool_call(calls, fragment)
        finish = piece["finish_reason"] or finish
    replica.metrics.finished(usage)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
    return head | {"object": "chat.completion", "choices": [choice], "usage": usage}


def merge_tool_call(calls: dict[int, dict[str, Any]], fragment: dict[str, Any]) -> None:
    """Fold one streamed tool-call fragment into the whole call it belongs to."""
    index = int(fragment.get("index", 0))
    function = fragment.get("function") or {}
    call = calls.setdefault(
        index,
        {"id": fragment.get("id") or f"call_{index}", "type": "function", "function": {"arguments": ""}},
    )
    if function.get("name"):
        call["function"]["name"] = function["name"]
    call["function"]["arguments"] += function.get("arguments") or ""


def log_to(path: str, level: str) -> None:
    """Log to ``path``, rotated, and send what the process writes to its standard output and
    error (a C library's messages, a stray print) through the same bounded log."""
    configure_logging(level)
    handler = RotatingFileHandler(path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS)
    handler.setFormatter(logging.Formatter(LINE_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    reader, writer = os.pipe()
    os.dup2(writer, 1)
    os.dup2(writer, 2)
    os.close(writer)
    output = logging.getLogger("modelyard.adapters.engines.replica.output")

    def relay() -> None:
        with os.fdopen(reader, "rb") as lines:
            for line in lines:
                output.info("%s", line.decode(errors="replace").rstrip())

    threading.Thread(target=relay, name="output", daemon=True).start()


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="One modelyard replica.")
    parser.add_argument("--backend", choices=["llamacpp", "simulated", *MEDIA_BACKENDS], required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--path", help="GGUF file (llamacpp), model folder (embedding, transcription)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (a Ray node's own)")
    parser.add_argument("--context-window", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=512, help="prompt batch (llamacpp)")
    parser.add_argument("--kv-cache", default="", help="KV cache type, e.g. q8_0 (llamacpp)")
    parser.add_argument("--draft-tokens", type=int, default=0, help="n-gram speculative tokens (llamacpp)")
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--tokens-per-s", type=float, default=0.0)
    parser.add_argument("--parent-pid", type=int, help="give up when this process is gone")
    parser.add_argument("--log-file", help="log here, rotated (else to standard error)")
    # Unset: from the environment (MODELYARD_PROMPT_CACHE_MB, MODELYARD_REPLICA_QUEUE_*).
    parser.add_argument("--prompt-cache-mb", type=int, help="RAM for recent prompts' KV state (llamacpp)")
    parser.add_argument("--queue-depth", type=int, help="requests waiting behind the one served")
    parser.add_argument("--queue-timeout-s", type=float, help="longest wait before a 503")
    return parser.parse_args()


def _replica(args: argparse.Namespace) -> Replica:
    """The backend the arguments name; llama.cpp behind a bounded queue, one request at a time."""
    own = load_replica_settings()
    if args.backend == "llamacpp":
        from modelyard.adapters.engines.llamacpp_backend import LlamaCppBackend

        cache_mb = own.prompt_cache_mb if args.prompt_cache_mb is None else args.prompt_cache_mb
        backend = LlamaCppBackend(
            model=args.model,
            path=args.path,
            context_window=args.context_window,
            threads=args.threads,
            batch=args.batch,
            kv_cache=args.kv_cache,
            draft_tokens=args.draft_tokens,
            prompt_cache_bytes=cache_mb << 20,
        )
        admission = Admission(
            1,
            own.queue_depth if args.queue_depth is None else args.queue_depth,
            own.queue_timeout_s if args.queue_timeout_s is None else args.queue_timeout_s,
        )
        return Replica(backend, admission)
    simulated = SimulatedBackend(
        model=args.model,
        ttft_ms=args.ttft_ms,
        tokens_per_s=args.tokens_per_s,
        context_window=args.context_window,
    )
    return Replica(simulated)


def main() -> None:
    """Start one replica process."""
    import uvicorn

    args = _arguments()
    if args.parent_pid is not None:
        lifeline.hold(args.parent_pid)
    # Taken out of the environment, so nothing this process starts inherits it.
    token = os.environ.pop(lifeline.TOKEN_VARIABLE, "")
    level = load_log_settings().level
    if args.log_file:
        log_to(args.log_file, level)
    else:
        configure_logging(level)
    if args.parent_pid is not None:
        lifeline.watch(args.parent_pid)
    if not token:
        log.error(
            "no %s in the environment: a replica answers only the server that started it",
            lifeline.TOKEN_VARIABLE,
        )
        raise SystemExit(2)
    try:
        if args.backend in MEDIA_BACKENDS:
            from modelyard.adapters.engines.media_replica import build_media_app, media_backend

            app = build_media_app(media_backend(args.backend, args.model, args.path, args.threads), token)
        else:
            app = build_app(_replica(args), token)
        # No access line per request here: the gateway logs each one. log_config=None keeps
        # uvicorn's own records in the process's format.
        uvicorn.run(
            wired(app),
            host=args.host,
            port=args.port,
            log_level=level.lower(),
            log_config=None,
            access_log=False,
        )
    except Exception:
        # Standard error goes to the log through a daemon thread that may not outlive this.
        log.exception("the replica failed")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
