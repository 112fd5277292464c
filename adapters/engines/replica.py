"""A replica process: one model behind the OpenAI chat API on a loopback port.

Run as ``python -m modelyard.adapters.engines.replica --backend llamacpp --model ID --path
FILE --port N`` (or ``--backend simulated``). It serves ``POST /v1/chat/completions``
(streamed as server-sent events ending in ``data: [DONE]``, or whole), ``GET /health`` and
``GET /metrics`` in Prometheus text with vLLM's metric names, so one parser reads every
engine. A client that disconnects mid-stream cancels its generation.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import msgspec
from litestar import Litestar, Request, get, post
from litestar.exceptions import HTTPException
from litestar.response import Response, Stream

from modelyard.adapters.engines.backends import Backend, ContextOverflow, SimulatedBackend
from modelyard.adapters.engines.metrics import MEDIA_TYPE, ReplicaMetrics
from modelyard.adapters.logs import configure_logging
from modelyard.settings import load_log_settings

# Named, not __name__: run with -m this module is __main__.
log = logging.getLogger("modelyard.adapters.engines.replica")
_DONE = object()


def _error(status: int, message: str, kind: str = "invalid_request_error") -> Response[Any]:
    """An OpenAI-style error answer; every refusal is logged with its reason (a gateway 502
    or 400 is then traceable to the replica's own line)."""
    log.log(logging.ERROR if status >= 500 else logging.WARNING, "refused %d %s: %s", status, kind, message)
    return Response({"error": {"message": message, "type": kind, "code": kind}}, status_code=status)


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


def build_app(replica: Replica) -> Litestar:
    """The replica's HTTP API."""

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


def _die_with_parent() -> None:
    """On Linux, get SIGTERM when the process that started this replica dies, however it
    dies (a killed server must not leave replicas behind, holding memory and ports)."""
    if sys.platform != "linux":
        return
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def main() -> None:
    """Start one replica process."""
    import uvicorn

    parser = argparse.ArgumentParser(description="One modelyard replica.")
    parser.add_argument("--backend", choices=["llamacpp", "simulated"], required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--path", help="GGUF file (llamacpp)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--context-window", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--tokens-per-s", type=float, default=0.0)
    args = parser.parse_args()
    level = load_log_settings().level
    configure_logging(level)
    _die_with_parent()
    backend: Backend
    if args.backend == "llamacpp":
        from modelyard.adapters.engines.llamacpp_backend import LlamaCppBackend

        backend = LlamaCppBackend(
            model=args.model, path=args.path, context_window=args.context_window, threads=args.threads
        )
    else:
        backend = SimulatedBackend(
            model=args.model,
            ttft_ms=args.ttft_ms,
            tokens_per_s=args.tokens_per_s,
            context_window=args.context_window,
        )
    # No access line per request here: the gateway logs each one. log_config=None keeps
    # uvicorn's own records in configure_logging's format.
    uvicorn.run(
        build_app(Replica(backend)),
        host="127.0.0.1",
        port=args.port,
        log_level=level.lower(),
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
