"""Embeddings, rerank and audio through the gateway: checked, routed, relayed, metered.

Two ways in, as for chat. On an instance (``/v1/{id}/v1/embeddings``, or by its ``auxk_``
key) the instance decides the model. On the second document's public routes
(``/api/v1/public/embeddings/generate``, ``/rerank``, ``/audio/…``) the account's
management key calls, and ``model`` picks the account's serving deployment of that model.
Each call is recorded as usage: tokens the model read, or milliseconds of audio.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

import anyio
import msgspec
from litestar import Request

from modelyard.adapters.engines.media_shapes import EmbeddingRequest, RerankRequest, SpeechRequest
from modelyard.adapters.views.db import ViewDatabase
from modelyard.api.auth import Principal
from modelyard.api.bodies import decode
from modelyard.api.gateway.calls import Call, Gateway
from modelyard.api.gateway.forwarder import Answer, Relayed
from modelyard.api.gateway.requests import upstream_error
from modelyard.domain.catalog.models import Kind, find_model
from modelyard.domain.shared.errors import InstanceNotRunning, InvalidRequest, ModelNotFound
from modelyard.projections.deployments.queries import serving_deployments_of

# The model a public call uses when it names none: the CPU embedding model, the small Whisper,
# the speech engine.
DEFAULT_MODEL = {
    Kind.EMBEDDING: "all-minilm-l6-v2",
    Kind.TRANSCRIPTION: "whisper-tiny-en",
    Kind.SPEECH: "espeak-ng",
}
# The largest audio file a transcription takes (OpenAI's own limit).
MAX_AUDIO_BYTES = 25 * 1024 * 1024
_ROUTE = {
    Kind.EMBEDDING: "embeddings",
    Kind.TRANSCRIPTION: "transcription",
    Kind.SPEECH: "speech",
}


class Speech(msgspec.Struct, frozen=True, kw_only=True):
    """Spoken audio as the replica answered it."""

    mp3: bytes
    seconds: float


def _kind_of(model: str) -> Kind | None:
    try:
        return find_model(model).kind
    except ModelNotFound:
        return None


class Media:
    """The gateway's calls to models that are not chat."""

    def __init__(self, gateway: Gateway, views: ViewDatabase) -> None:
        self.gateway, self._views = gateway, views

    # --- who serves the call --------------------------------------------------------------

    def _serving(self, principal: Principal, model: str) -> UUID:
        with self._views.read() as tx:
            found = serving_deployments_of(tx, principal.account_id, model)
        if not found:
            raise InstanceNotRunning(
                f"No deployment of {model} serves on this account; provision one "
                f'(POST /v1/provision {{"model": "{model}"}}) and call again once it runs.'
            )
        return found[0]

    async def public(self, principal: Principal, model: str | None, kind: Kind) -> Call:
        """The call of a public route: ``model`` (or the kind's default) on the account's deployment."""
        chosen = model or DEFAULT_MODEL[kind]
        found = _kind_of(chosen)
        if found is None:
            raise ModelNotFound(f"Model {chosen!r} is not in the catalog; GET /v1/models lists them.")
        if found is not kind:
            raise InvalidRequest(
                f"{chosen} is a {found.value} model; this route takes a {_ROUTE[kind]} model."
            )
        deployment = await anyio.to_thread.run_sync(self._serving, principal, chosen)
        return Call(deployment_id=deployment, model=chosen, principal=principal, started=time.perf_counter())

    @staticmethod
    def check(call: Call, kind: Kind) -> None:
        """An instance route reached a deployment of the right kind of model, or INVALID_REQUEST."""
        found = _kind_of(call.model)
        if found is not kind:
            what = found.value if found else "chat"
            raise InvalidRequest(
                f"This instance serves {call.model}, a {what} model; it has no {_ROUTE[kind]}."
            )

    # --- the calls ----------------------------------------------------------------------

    async def _relay(self, call: Call, body: Relayed) -> Answer:
        answer = await self.gateway.forwarder.relay(call.deployment_id, body)
        if answer.status != 200:
            raise upstream_error(answer.status, _json_or_empty(answer.body))
        return answer

    async def embeddings(self, call: Call, raw: bytes, *, echo: str | None = None) -> Any:
        """OpenAI's ``/embeddings`` answer; usage is the tokens the model read."""
        request = decode(raw, EmbeddingRequest)
        forwarded = msgspec.json.encode(msgspec.structs.replace(request, model=call.model))
        answer = await self._relay(call, Relayed(path="/v1/embeddings", data=forwarded))
        body: dict[str, Any] = msgspec.json.decode(answer.body)
        await self.gateway.finish(call, body.get("usage") or {})
        named = request.model if isinstance(request.model, str) else call.model
        return body | {"model": echo or named}

    async def rerank(self, call: Call, request: RerankRequest) -> Any:
        """Documents ordered by relevance to the query, the best ``top_n`` of them."""
        forwarded = msgspec.json.encode(msgspec.structs.replace(request, model=call.model))
        answer = await self._relay(call, Relayed(path="/v1/rerank", data=forwarded))
        body: dict[str, Any] = msgspec.json.decode(answer.body)
        await self.gateway.finish(call, body.get("usage") or {})
        return body

    async def transcribe(self, call: Call, raw: bytes, content_type: str) -> Any:
        """The replica's transcript of the multipart upload ``raw``; usage is the audio's length."""
        answer = await self._relay(
            call, Relayed(path="/v1/audio/transcriptions", data=raw, content_type=content_type)
        )
        body: dict[str, Any] = msgspec.json.decode(answer.body)
        seconds = float(body.get("duration") or 0.0)
        await self.gateway.finish(call, {"audio_ms": round(seconds * 1000)})
        return body

    async def speak(self, call: Call, request: SpeechRequest) -> Speech:
        """mp3 bytes of the text; usage is the length of the audio spoken."""
        forwarded = msgspec.json.encode(msgspec.structs.replace(request, model=call.model))
        answer = await self._relay(call, Relayed(path="/v1/audio/speech", data=forwarded))
        seconds = float(answer.headers.get("x-audio-seconds", "0") or 0)
        await self.gateway.finish(call, {"audio_ms": round(seconds * 1000)})
        return Speech(mp3=answer.body, seconds=seconds)


async def multipart_model(request: Request[Any, Any, Any]) -> tuple[bytes, str, str | None]:
    """The raw multipart body, its content type, and its ``model`` field; no ``file`` -> 400."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise InvalidRequest("Send the audio as multipart/form-data with the fields 'file' and 'model'.")
    raw = await request.body()
    form = await request.form()
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise InvalidRequest("The multipart field 'file' (the audio) is missing.")
    model = form.get("model")
    return raw, content_type, model if isinstance(model, str) and model else None


def _json_or_empty(raw: bytes) -> dict[str, Any]:
    try:
        decoded = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return {}
    return decoded if isinstance(decoded, dict) else {}
