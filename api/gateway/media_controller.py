"""Routes of the models that are not chat.

``MediaController``: OpenAI's paths on an instance's base URL (``/v1/{id}/v1/embeddings``,
``…/audio/transcriptions``, ``…/audio/speech``) and by ``auxk_`` key (``/v1/embeddings``, …),
answering errors in OpenAI's shape. ``PublicMediaController``: the second document's
``/api/v1/public/embeddings/generate``, ``/rerank``, ``/audio/transcriptions`` and
``/audio/tts``, called with the account's management key.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency
from litestar.params import FromPath, RawBody, SkipValidation

from modelyard.adapters.engines.media_shapes import EmbeddingRequest, RerankRequest, SpeechRequest
from modelyard.api.auth import Principal
from modelyard.api.bodies import decode
from modelyard.api.errors import COMMON_ERRORS, COMMON_OPENAI_ERRORS, OPENAI_ERRORS
from modelyard.api.gateway.calls import Call
from modelyard.api.gateway.controller import Authorization
from modelyard.api.gateway.media import MAX_AUDIO_BYTES, Media, Speech, multipart_model
from modelyard.domain.catalog.models import Kind

MediaDependency = NamedDependency[SkipValidation[Media]]
# Room for the multipart framing around the largest audio file.
MAX_AUDIO_BODY = MAX_AUDIO_BYTES + 64 * 1024


def _mp3(speech: Speech) -> Response[bytes]:
    return Response(speech.mp3, media_type="audio/mpeg", headers={"X-Audio-Seconds": f"{speech.seconds:.3f}"})


async def _on(media: Media, authorization: str, instance_id: str | None, kind: Kind) -> Call:
    gateway = media.gateway
    if instance_id is None:
        call = await gateway.open_by_key(authorization)
    else:
        call = await gateway.open(authorization, instance_id)
    media.check(call, kind)
    return call


class MediaController(Controller):
    """Embeddings and audio on an instance, with its ``auxk_`` key (OpenAI's paths and shapes)."""

    path = "/v1"
    tags = ["inference"]
    opt = OPENAI_ERRORS

    @post(
        "/{instance_id:str}/v1/embeddings",
        operation_id="embeddingsOnInstance",
        responses=COMMON_OPENAI_ERRORS,
        status_code=200,
    )
    async def embeddings_on_instance(
        self,
        media: MediaDependency,
        instance_id: FromPath[str],
        body: RawBody,
        authorization: Authorization = "",
    ) -> Any:
        """OpenAI ``embeddings.create`` on the instance; ``model`` is echoed, the instance's model embeds."""
        call = await _on(media, authorization, instance_id, Kind.EMBEDDING)
        return await media.embeddings(call, body)

    @post("/embeddings", operation_id="embeddings", responses=COMMON_OPENAI_ERRORS, status_code=200)
    async def embeddings_by_key(
        self, media: MediaDependency, body: RawBody, authorization: Authorization = ""
    ) -> Any:
        """OpenAI ``embeddings.create`` on the instance the ``auxk_`` key belongs to."""
        call = await _on(media, authorization, None, Kind.EMBEDDING)
        return await media.embeddings(call, body)

    @post(
        "/{instance_id:str}/v1/audio/transcriptions",
        operation_id="transcriptionsOnInstance",
        responses=COMMON_OPENAI_ERRORS,
        status_code=200,
        request_max_body_size=MAX_AUDIO_BODY,
    )
    async def transcriptions_on_instance(
        self,
        media: MediaDependency,
        instance_id: FromPath[str],
        request: Request[Any, Any, Any],
        authorization: Authorization = "",
    ) -> Any:
        """OpenAI ``audio.transcriptions.create`` (multipart ``file``) on the instance."""
        call = await _on(media, authorization, instance_id, Kind.TRANSCRIPTION)
        raw, content_type, _ = await multipart_model(request)
        return await media.transcribe(call, raw, content_type)

    @post(
        "/audio/transcriptions",
        operation_id="transcriptions",
        responses=COMMON_OPENAI_ERRORS,
        status_code=200,
        request_max_body_size=MAX_AUDIO_BODY,
    )
    async def transcriptions_by_key(
        self, media: MediaDependency, request: Request[Any, Any, Any], authorization: Authorization = ""
    ) -> Any:
        """OpenAI ``audio.transcriptions.create`` on the instance the ``auxk_`` key belongs to."""
        call = await _on(media, authorization, None, Kind.TRANSCRIPTION)
        raw, content_type, _ = await multipart_model(request)
        return await media.transcribe(call, raw, content_type)

    @post(
        "/{instance_id:str}/v1/audio/speech",
        operation_id="speechOnInstance",
        responses=COMMON_OPENAI_ERRORS,
        status_code=200,
    )
    async def speech_on_instance(
        self,
        media: MediaDependency,
        instance_id: FromPath[str],
        body: RawBody,
        authorization: Authorization = "",
    ) -> Response[bytes]:
        """OpenAI ``audio.speech.create`` on the instance: mp3 bytes."""
        call = await _on(media, authorization, instance_id, Kind.SPEECH)
        return _mp3(await media.speak(call, decode(body, SpeechRequest)))

    @post("/audio/speech", operation_id="speech", responses=COMMON_OPENAI_ERRORS, status_code=200)
    async def speech_by_key(
        self, media: MediaDependency, body: RawBody, authorization: Authorization = ""
    ) -> Response[bytes]:
        """OpenAI ``audio.speech.create`` on the instance the ``auxk_`` key belongs to."""
        call = await _on(media, authorization, None, Kind.SPEECH)
        return _mp3(await media.speak(call, decode(body, SpeechRequest)))


def _model(named: object) -> str | None:
    return named if isinstance(named, str) else None


class PublicMediaController(Controller):
    """The second document's embeddings, rerank and audio routes, by the account's management key."""

    path = "/api/v1/public"
    tags = ["inference"]

    @post("/embeddings/generate", operation_id="generateEmbeddings", responses=COMMON_ERRORS, status_code=200)
    async def embeddings(
        self, media: MediaDependency, request: Request[Principal, Any, Any], body: RawBody
    ) -> Any:
        """``{"input", "model"}`` -> ``data[i].embedding`` and token ``usage``, from the
        account's deployment of ``model``."""
        model = _model(decode(body, EmbeddingRequest).model)
        call = await media.public(request.user, model, Kind.EMBEDDING)
        return await media.embeddings(call, body, echo=call.model)

    @post("/rerank", operation_id="rerank", responses=COMMON_ERRORS, status_code=200)
    async def rerank(
        self, media: MediaDependency, request: Request[Principal, Any, Any], body: RawBody
    ) -> Any:
        """``{"query", "documents", "top_n"}`` -> ``results[]`` (``index``, ``relevance_score``,
        ``document``), best first."""
        ask = decode(body, RerankRequest)
        call = await media.public(request.user, _model(ask.model), Kind.EMBEDDING)
        return await media.rerank(call, ask)

    @post(
        "/audio/transcriptions",
        operation_id="transcribeAudio",
        responses=COMMON_ERRORS,
        status_code=200,
        request_max_body_size=MAX_AUDIO_BODY,
    )
    async def transcriptions(self, media: MediaDependency, request: Request[Principal, Any, Any]) -> Any:
        """Multipart ``file`` + ``model`` -> ``{"text", "language", "duration"}``."""
        raw, content_type, model = await multipart_model(request)
        call = await media.public(request.user, model, Kind.TRANSCRIPTION)
        return await media.transcribe(call, raw, content_type)

    @post("/audio/tts", operation_id="textToSpeech", responses=COMMON_ERRORS, status_code=200)
    async def tts(
        self, media: MediaDependency, request: Request[Principal, Any, Any], body: RawBody
    ) -> Response[bytes]:
        """``{"input", "model", "voice"}`` -> mp3 bytes."""
        ask = decode(body, SpeechRequest)
        call = await media.public(request.user, _model(ask.model), Kind.SPEECH)
        return _mp3(await media.speak(call, ask))
