"""The HTTP API of a replica that serves embeddings, transcription or speech.

Built by ``replica.main`` for the ``embedding``, ``transcription`` and ``speech`` backends,
with the same token check, health and Prometheus metrics as a chat replica:

- ``POST /v1/embeddings`` (OpenAI's shape, ``float`` or ``base64``) and ``POST /v1/rerank``
  on an embedding replica;
- ``POST /v1/audio/transcriptions`` (multipart ``file``) on a transcription replica; the
  answer carries ``usage: {"type": "duration", "seconds": …}`` as OpenAI's newer models do;
- ``POST /v1/audio/speech`` on a speech replica: mp3 bytes, their length in seconds in
  ``X-Audio-Seconds``.

What the model refuses (too long, not audio, an unknown voice) is a 400 with its reason.
"""

from __future__ import annotations

import base64
import time
from array import array
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import msgspec
from litestar import Litestar, Request, get, post
from litestar.response import Response

from modelyard.adapters.engines.media_backends import (
    EmbeddingBackend,
    MediaRefused,
    SpeechBackend,
    TranscriptionBackend,
    usage,
)
from modelyard.adapters.engines.media_shapes import EmbeddingRequest, RerankRequest, SpeechRequest
from modelyard.adapters.engines.metrics import MEDIA_TYPE, ReplicaMetrics
from modelyard.adapters.engines.replica import _error, _failed, token_check

MediaBackend = EmbeddingBackend | TranscriptionBackend | SpeechBackend
T = TypeVar("T")
# Each call holds the backend's lock; one thread a call is enough.
_LIMITER = anyio.CapacityLimiter(4)


def _decoded(raw: bytes, kind: type[T]) -> T | Response[Any]:
    try:
        return msgspec.json.decode(raw, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return _error(400, f"Invalid body: {exc}.")


async def _run(metrics: ReplicaMetrics, work: Callable[[], T]) -> T | Response[Any]:
    """``work`` in a worker thread, counted as a request; a refusal of the model becomes a 400."""
    metrics.queued()
    started = time.perf_counter()
    try:
        return await anyio.to_thread.run_sync(work, limiter=_LIMITER)
    except MediaRefused as exc:
        return _error(400, str(exc))
    finally:
        # The whole answer comes at once: its time to "first token" is its time to answer.
        metrics.started(time.perf_counter() - started)
        metrics.left(started=True, completed=True)


def _embedding_routes(backend: EmbeddingBackend, metrics: ReplicaMetrics) -> list[Any]:
    @post("/v1/embeddings", status_code=200)
    async def embeddings(request: Request[Any, Any, Any]) -> Any:
        body = _decoded(await request.body(), EmbeddingRequest)
        if isinstance(body, Response):
            return body
        if body.dimensions not in (msgspec.UNSET, backend.dimensions):
            return _error(
                400, f"{backend.model} has {backend.dimensions} dimensions; it cannot shorten them."
            )
        done = await _run(metrics, lambda: backend.embed(body.texts))
        if isinstance(done, Response):
            return done
        metrics.finished({"prompt_tokens": done.tokens})
        as_text = body.encoding_format == "base64"
        data = [
            {"object": "embedding", "index": i, "embedding": _base64(v) if as_text else v}
            for i, v in enumerate(done.vectors)
        ]
        model = body.model if isinstance(body.model, str) else backend.model
        return {"object": "list", "data": data, "model": model, "usage": usage(done.tokens)}

    @post("/v1/rerank", status_code=200)
    async def rerank(request: Request[Any, Any, Any]) -> Any:
        body = _decoded(await request.body(), RerankRequest)
        if isinstance(body, Response):
            return body
        done = await _run(metrics, lambda: backend.rerank(body.query, body.documents))
        if isinstance(done, Response):
            return done
        scores, tokens = done
        metrics.finished({"prompt_tokens": tokens})
        ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        top = ranked[: body.top_n] if isinstance(body.top_n, int) else ranked
        results = [
            {"index": i, "relevance_score": scores[i]}
            | ({"document": body.documents[i]} if body.return_documents else {})
            for i in top
        ]
        return {"model": backend.model, "results": results, "usage": usage(tokens)}

    return [embeddings, rerank]


def _transcription_routes(backend: TranscriptionBackend, metrics: ReplicaMetrics) -> list[Any]:
    @post("/v1/audio/transcriptions", status_code=200)
    async def transcriptions(request: Request[Any, Any, Any]) -> Any:
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            return _error(400, "Send the audio as the multipart field 'file'.")
        audio = await upload.read()
        language = form.get("language")
        done = await _run(
            metrics, lambda: backend.transcribe(audio, language if isinstance(language, str) else None)
        )
        if isinstance(done, Response):
            return done
        seconds = round(done.duration_s, 3)
        return {
            "text": done.text,
            "language": done.language,
            "duration": seconds,
            "usage": {"type": "duration", "seconds": seconds},
        }

    return [transcriptions]


def _speech_routes(backend: SpeechBackend, metrics: ReplicaMetrics) -> list[Any]:
    @post("/v1/audio/speech", status_code=200)
    async def speech(request: Request[Any, Any, Any]) -> Any:
        body = _decoded(await request.body(), SpeechRequest)
        if isinstance(body, Response):
            return body
        voice = body.voice if isinstance(body.voice, str) else None
        done = await _run(metrics, lambda: backend.speak(body.input, voice))
        if isinstance(done, Response):
            return done
        mp3, seconds = done
        return Response(mp3, media_type="audio/mpeg", headers={"X-Audio-Seconds": f"{seconds:.3f}"})

    return [speech]


def _base64(vector: list[float]) -> str:
    """OpenAI's ``base64`` encoding: the little-endian float32 array's bytes."""
    packed = array("f", vector)
    if packed.itemsize != 4:  # pragma: no cover - every platform Python runs on has 4-byte floats
        raise RuntimeError("float32 is not 4 bytes here")
    return base64.b64encode(packed.tobytes()).decode()


def build_media_app(backend: MediaBackend, token: str) -> Litestar:
    """The replica's HTTP API for ``backend``, answering only calls that carry ``token``."""
    if not token:
        raise ValueError("a replica needs a token to check; refusing to serve every caller")
    metrics = ReplicaMetrics(model=backend.model)

    @get("/health", sync_to_thread=False)
    def health() -> dict[str, str]:
        return {"status": "ok", "model": backend.model}

    @get("/metrics", sync_to_thread=False, media_type=MEDIA_TYPE)
    def metrics_text() -> str:
        return metrics.render()

    @get("/v1/models", sync_to_thread=False)
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": backend.model, "object": "model", "owned_by": "modelyard"}]}

    @post("/v1/chat/completions", status_code=400)
    async def chat() -> Response[Any]:
        # Said plainly, so the gateway relays it as the caller's 400 (not a bare 404).
        routes = {EmbeddingBackend: "/embeddings", TranscriptionBackend: "/audio/transcriptions"}
        route = routes.get(type(backend), "/audio/speech")
        return _error(400, f"{backend.model} is not a chat model; call {route} on this instance.")

    if isinstance(backend, EmbeddingBackend):
        routes = _embedding_routes(backend, metrics)
    elif isinstance(backend, TranscriptionBackend):
        routes = _transcription_routes(backend, metrics)
    else:
        routes = _speech_routes(backend, metrics)
    return Litestar(
        route_handlers=[health, metrics_text, models, chat, *routes],
        before_request=token_check(token),
        exception_handlers={Exception: _failed},
        logging_config=None,
        # An upload of audio is larger than Litestar's default 10 MB body limit allows.
        request_max_body_size=MAX_AUDIO_BYTES,
    )


# The largest audio file a transcription takes (OpenAI's own limit).
MAX_AUDIO_BYTES = 25 * 1024 * 1024


def media_backend(kind: str, model: str, path: str | None, threads: int) -> MediaBackend:
    """The backend a replica of ``kind`` runs (``replica.MEDIA_BACKENDS``)."""
    if kind == "speech":
        return SpeechBackend(model=model, path=path, threads=threads)
    if not path:
        raise ValueError(f"a {kind} replica needs its model folder (--path)")
    if kind == "embedding":
        return EmbeddingBackend(model=model, path=path, threads=threads)
    return TranscriptionBackend(model=model, path=path, threads=threads)
