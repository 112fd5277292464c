"""Request shapes of the routes that are not chat, written once: the gateway checks a body
with them before anything reaches a replica, and the replica decodes the same body with them.

Field names are OpenAI's where OpenAI has the route (``/v1/embeddings``,
``/v1/audio/speech``) and the second document's where it does not (rerank, ``/audio/tts``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

Short = Annotated[str, Meta(max_length=256)]
# One call embeds at most this many texts (OpenAI's own limit is 2048).
MAX_INPUTS = 2048
# Documents one rerank call scores.
MAX_DOCUMENTS = 1000


class _Body(Struct, frozen=True, forbid_unknown_fields=True):
    """A request body: a field nobody takes is refused."""


class EmbeddingRequest(_Body, frozen=True):
    """``POST …/embeddings``: one text or a list of texts.

    Token arrays (which OpenAI also takes) are refused with a clear message: the tokens
    would be another model's, and this server embeds text.
    """

    input: (
        Annotated[str, Meta(min_length=1)]
        | Annotated[list[Annotated[str, Meta(min_length=1)]], Meta(min_length=1, max_length=MAX_INPUTS)]
    )
    model: Short | UnsetType = UNSET
    encoding_format: Literal["float", "base64"] | UnsetType = UNSET
    dimensions: Annotated[int, Meta(ge=1)] | UnsetType = UNSET
    user: Short | UnsetType = UNSET

    @property
    def texts(self) -> list[str]:
        """The inputs as a list."""
        return [self.input] if isinstance(self.input, str) else list(self.input)


class RerankRequest(_Body, frozen=True):
    """``POST /api/v1/public/rerank``: documents scored against a query, the best ``top_n`` kept."""

    query: Annotated[str, Meta(min_length=1)]
    documents: Annotated[list[str], Meta(min_length=1, max_length=MAX_DOCUMENTS)]
    top_n: Annotated[int, Meta(ge=1)] | UnsetType = UNSET
    model: Short | UnsetType = UNSET
    return_documents: bool = True


class SpeechRequest(_Body, frozen=True):
    """``POST /api/v1/public/audio/tts`` (and OpenAI's ``/v1/audio/speech``): text to mp3."""

    input: Annotated[str, Meta(min_length=1, max_length=4096)]
    model: Short | UnsetType = UNSET
    voice: Short | UnsetType = UNSET
    response_format: Literal["mp3"] | UnsetType = UNSET
    speed: Annotated[float, Meta(ge=0.25, le=4.0)] | UnsetType = UNSET
    instructions: str | UnsetType = UNSET
