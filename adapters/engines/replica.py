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
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from logging.handlers import RotatingFileHandler
from typing import Any

import msgspec
from litestar import Litestar, MediaType, Request, get, post
from litestar.exceptions import HTTPException
from litestar.response import Response, Stream

from modelyard.adapters.engines import lifeline
from modelyard.adapters.engines.backends import Backend, ContextOverflow, SimulatedBackend
from modelyard.adapters.engines.metrics import MEDIA_TYPE, ReplicaMetrics
from modelyard.adapters.logs import LINE_FORMAT, configure_logging
from modelyard.settings import load_log_settings

# Named, not __name__: run with -m this module is __main__.
log = logging.getLogger("modelyard.adapters.engines.replica")
_DONE = object()
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


class Replica:
    """The state of one replica process: its backend and its counters."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.metrics = ReplicaMetrics(model=backend.model)

    async def chunks(self, request: dict[str, Any]) -> AsyncGenerator[dict[str, Any]]:
        """Generate in a worker thread; stop it if the consumer of this iterator goes away."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()

        def produce() -> None:
            self.metrics.engine_began()
            try:
                for chunk in self.backend.generate(request, cancel):
                    self.metrics.engine_chunk()
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except Exception as exc:  # handed to the consumer, which answers with it
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                self.metrics.engine_ended()
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        self.metrics.queued()
        thread = threading.Thread(target=produce, daemon=True)
        started, first, finished = time.perf_counter(), True, False
        thread.start()
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, Exception):
                    raise item
                if first:
                    self.metrics.started(time.perf_counter() - started)
                    first = False
                yield item
            finished = True
        finally:
            cancel.set()
            self.metrics.left(started=not first, completed=finished)


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
    pieces = replica.chunks(body)
    try:
        # The first piece comes before the status line, so an engine's refusal is still a 400.
        first = await anext(pieces)
    except ContextOverflow as exc:
        return _error(400, str(exc), "context_length_exceeded")
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = _sse(replica, first, pieces, head, include_usage=include_usage)
        return Stream(events, media_type="text/event-stream")
    return Response(await _whole(replica, first, pieces, head))


async def _chain(first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    yield first
    async for piece in rest:
        yield piece


async def _sse(
    replica: Replica,
    first: dict[str, Any],
    pieces: AsyncGenerator[dict[str, Any]],
    head: dict[str, Any],
    *,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    opening = True
    try:
        async for piece in _chain(first, pieces):
            if "usage" in piece:
                replica.metrics.finished(piece["usage"])
                if not include_usage:
                    continue
                out = head | {"choices": [], "usage": piece["usage"]}
            else:
                delta = {"role": "assistant", **piece["delta"]} if opening else piece["delta"]
                opening = False
                choice = {
                    "index": 0,
                    "delta": delta,
                    "finish_reason": piece["finish_reason"],
                    "logprobs": None,
                }
                out = head | {"choices": [choice]}
            yield f"data: {json.dumps(out)}\n\n".encode()
        yield b"data: [DONE]\n\n"
    finally:
        # A client gone mid-stream closes this generator; closing the engine's stops its thread.
        await pieces.aclose()


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
    parser.add_argument("--backend", choices=["llamacpp", "simulated"], required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--path", help="GGUF file (llamacpp)")
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
    return parser.parse_args()


def _backend(args: argparse.Namespace) -> Backend:
    if args.backend == "llamacpp":
        from modelyard.adapters.engines.llamacpp_backend import LlamaCppBackend

        return LlamaCppBackend(
            model=args.model,
            path=args.path,
            context_window=args.context_window,
            threads=args.threads,
            batch=args.batch,
            kv_cache=args.kv_cache,
            draft_tokens=args.draft_tokens,
        )
    return SimulatedBackend(
        model=args.model,
        ttft_ms=args.ttft_ms,
        tokens_per_s=args.tokens_per_s,
        context_window=args.context_window,
    )


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
        app = build_app(Replica(_backend(args)), token)
        # No access line per request here: the gateway logs each one. log_config=None keeps
        # uvicorn's own records in the process's format.
        uvicorn.run(
            app, host=args.host, port=args.port, log_level=level.lower(), log_config=None, access_log=False
        )
    except Exception:
        # Standard error goes to the log through a daemon thread that may not outlive this.
        log.exception("the replica failed")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
