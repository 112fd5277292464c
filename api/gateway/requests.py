"""The inference routes' request shapes, typed and bounded as OpenAI bounds them, and how an
engine's refusal is answered.

A chat.completions body is decoded straight into ``ChatRequest``: a field OpenAI does not
take, a role that is not one of the five, a temperature that is not a number in [0, 2]
are refused with INVALID_REQUEST naming the field, before anything reaches a replica. What
was accepted is what is forwarded (``forwarded``): fields the client left out stay out.
"""

from __future__ import annotations

import enum
import logging
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from modelyard.api.bodies import decode
from modelyard.api.errors import EngineError
from modelyard.domain.shared.errors import InvalidRequest, ModelyardError

log = logging.getLogger(__name__)

# A model id, a name, a tool call id: short strings, however long the body may be.
Short = Annotated[str, Meta(max_length=256)]
PositiveTokens = Annotated[int, Meta(ge=1, le=2**31 - 1)]
Temperature = Annotated[float, Meta(ge=0, le=2)]
Penalty = Annotated[float, Meta(ge=-2, le=2)]
FunctionName = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
# OpenAI's metadata: up to 16 pairs, keys up to 64 characters, values up to 512.
Metadata = Annotated[
    dict[Annotated[str, Meta(max_length=64)], Annotated[str, Meta(max_length=512)]], Meta(max_length=16)
]


class _Body(Struct, frozen=True, forbid_unknown_fields=True):
    """A request part: a field nobody takes is refused, as OpenAI does (and a value nobody
    takes is never skipped over, however deep). Subclasses repeat ``frozen`` for mypy."""


class Role(enum.Enum):
    """Who speaks a chat message."""

    SYSTEM = "system"
    DEVELOPER = "developer"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class TextPart(_Body, frozen=True, tag="text", tag_field="type"):
    """``{"type": "text", "text": …}``."""

    text: str


class ImageUrl(_Body, frozen=True):
    """Where an image is, and at what detail it is read."""

    url: str
    detail: Literal["auto", "low", "high"] | UnsetType = UNSET


class ImagePart(_Body, frozen=True, tag="image_url", tag_field="type"):
    """``{"type": "image_url", "image_url": {"url": …}}``."""

    image_url: ImageUrl


class InputAudio(_Body, frozen=True):
    """Base64 audio and its format."""

    data: str
    format: Literal["wav", "mp3"]


class AudioPart(_Body, frozen=True, tag="input_audio", tag_field="type"):
    """``{"type": "input_audio", "input_audio": {"data", "format"}}``."""

    input_audio: InputAudio


class FileRef(_Body, frozen=True):
    """A file, by id or inline."""

    file_id: Short | UnsetType = UNSET
    file_data: str | UnsetType = UNSET
    filename: Short | UnsetType = UNSET


class FilePart(_Body, frozen=True, tag="file", tag_field="type"):
    """``{"type": "file", "file": {…}}``."""

    file: FileRef


class RefusalPart(_Body, frozen=True, tag="refusal", tag_field="type"):
    """An assistant's earlier refusal, replayed."""

    refusal: str


ContentPart = TextPart | ImagePart | AudioPart | FilePart | RefusalPart


class CalledFunction(_Body, frozen=True):
    """The function an assistant called, with its arguments as JSON text."""

    name: FunctionName
    arguments: str


class ToolCall(_Body, frozen=True):
    """One tool call of an assistant message, replayed in the conversation."""

    id: Short
    function: CalledFunction
    type: Literal["function"] = "function"


class Message(_Body, frozen=True):
    """One chat message. An assistant's may carry ``tool_calls`` and leave ``content`` out; a
    tool's answers a call by ``tool_call_id``; the others must say something."""

    role: Role
    content: str | list[ContentPart] | UnsetType | None = UNSET
    name: Short | UnsetType = UNSET
    tool_calls: list[ToolCall] | UnsetType = UNSET
    tool_call_id: Short | UnsetType = UNSET
    refusal: str | UnsetType | None = UNSET

    def __post_init__(self) -> None:
        """Fields that only some roles take; msgspec reports a ValueError here at the message."""
        if self.role is Role.ASSISTANT:
            if self.content in (UNSET, None) and self.tool_calls is UNSET:
                raise ValueError("an assistant message needs content or tool_calls")
            return
        if self.tool_calls is not UNSET or self.refusal is not UNSET:
            raise ValueError(
                f"only assistant messages carry tool_calls or refusal, not {self.role.value} ones"
            )
        if self.content in (UNSET, None):
            raise ValueError(f"a {self.role.value} message needs content")
        if (self.role is Role.TOOL) != (self.tool_call_id is not UNSET):
            raise ValueError("tool_call_id is required on tool messages and only there")


class FunctionDef(_Body, frozen=True):
    """A function the model may call; ``parameters`` a JSON Schema object."""

    name: FunctionName
    description: str | UnsetType = UNSET
    parameters: dict[str, Any] | UnsetType = UNSET
    strict: bool | UnsetType | None = UNSET

    def __post_init__(self) -> None:
        """OpenAI takes only an object schema for a function's parameters."""
        if self.parameters is not UNSET and self.parameters.get("type", "object") != "object":
            raise ValueError("parameters must be a JSON Schema of type 'object'")


class Tool(_Body, frozen=True):
    """``{"type": "function", "function": {…}}``."""

    type: Literal["function"]
    function: FunctionDef


class ChosenFunction(_Body, frozen=True):
    """The function ``tool_choice`` names."""

    name: FunctionName


class NamedToolChoice(_Body, frozen=True):
    """``{"type": "function", "function": {"name": …}}``: call this function."""

    type: Literal["function"]
    function: ChosenFunction


class StreamOptions(_Body, frozen=True):
    """What a stream carries besides the deltas."""

    include_usage: bool | UnsetType = UNSET


class JsonSchemaFormat(_Body, frozen=True):
    """A named JSON Schema the answer must follow."""

    name: FunctionName
    description: str | UnsetType = UNSET
    schema: dict[str, Any] | UnsetType = UNSET
    strict: bool | UnsetType | None = UNSET


class TextFormat(_Body, frozen=True, tag="text", tag_field="type"):
    """Plain text answers."""


class JsonObjectFormat(_Body, frozen=True, tag="json_object", tag_field="type"):
    """Answers that are a JSON object."""


class JsonSchemaResponse(_Body, frozen=True, tag="json_schema", tag_field="type"):
    """Answers that follow ``json_schema``."""

    json_schema: JsonSchemaFormat


class ChatRequest(_Body, frozen=True):
    """``POST …/chat/completions``: OpenAI's request, field for field, bounded as OpenAI bounds it.

    ``n`` above 1 is refused: the gateway answers one choice per request, and saying so is
    better than silently returning fewer choices than were asked for.
    """

    messages: Annotated[list[Message], Meta(min_length=1)]
    model: Short | UnsetType = UNSET
    max_tokens: PositiveTokens | UnsetType | None = UNSET
    max_completion_tokens: PositiveTokens | UnsetType | None = UNSET
    temperature: Temperature | UnsetType | None = UNSET
    top_p: Annotated[float, Meta(ge=0, le=1)] | UnsetType | None = UNSET
    n: Annotated[int, Meta(ge=1, le=128)] | UnsetType | None = UNSET
    stop: str | Annotated[list[str], Meta(max_length=4)] | UnsetType | None = UNSET
    seed: int | UnsetType | None = UNSET
    stream: bool | UnsetType | None = UNSET
    stream_options: StreamOptions | UnsetType | None = UNSET
    tools: Annotated[list[Tool], Meta(min_length=1, max_length=128)] | UnsetType = UNSET
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | UnsetType = UNSET
    parallel_tool_calls: bool | UnsetType = UNSET
    user: Short | UnsetType = UNSET
    presence_penalty: Penalty | UnsetType | None = UNSET
    frequency_penalty: Penalty | UnsetType | None = UNSET
    response_format: TextFormat | JsonObjectFormat | JsonSchemaResponse | UnsetType = UNSET
    logit_bias: dict[str, Annotated[int, Meta(ge=-100, le=100)]] | UnsetType | None = UNSET
    metadata: Metadata | UnsetType | None = UNSET
    store: bool | UnsetType | None = UNSET
    logprobs: bool | UnsetType | None = UNSET
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | UnsetType | None = UNSET

    def __post_init__(self) -> None:
        """Combinations OpenAI refuses, and what this gateway does not serve."""
        if self.n not in (UNSET, None, 1):
            raise ValueError("n > 1 is not served: send one request per choice")
        if self.stream_options not in (UNSET, None) and not self.stream:
            raise ValueError("stream_options is only allowed when stream is true")
        if self.top_logprobs not in (UNSET, None) and not self.logprobs:
            raise ValueError("top_logprobs is only allowed when logprobs is true")

    @property
    def streamed(self) -> bool:
        """Whether the client asked for server-sent events."""
        return bool(self.stream)

    def forwarded(self) -> dict[str, Any]:
        """What the client sent and the gateway accepted, as JSON values for the replica.

        ``max_completion_tokens`` (what current OpenAI clients send) becomes the engines'
        ``max_tokens``: every engine honours that one, and the tighter of the two wins.
        """
        body: dict[str, Any] = msgspec.to_builtins(self)
        limit = body.pop("max_completion_tokens", None)
        if limit is not None:
            body["max_tokens"] = min(limit, body.get("max_tokens") or limit)
        return body


class NativeChat(_Body, frozen=True):
    """``POST /v1/{instanceId}/chat``: one message, an optional system prompt."""

    message: Annotated[str, Meta(min_length=1)]
    system: str | None = None
    max_tokens: PositiveTokens | None = None
    temperature: Temperature | None = None


def openai_body(raw: bytes) -> ChatRequest:
    """An OpenAI chat.completions request body, checked as OpenAI checks it."""
    return decode(raw, ChatRequest)


def native_body(raw: bytes) -> NativeChat:
    """The native chat body."""
    return decode(raw, NativeChat)


def upstream_error(status: int, answer: dict[str, Any]) -> ModelyardError:
    """An engine's refusal as the client's error: its reason when it refused the request
    (400), a plain ENGINE_ERROR when it failed (its own words go to the log, not the client)."""
    found = answer.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    said = error.get("message")
    log.warning("engine answered %d: %.500s", status, said)
    if status < 500 and isinstance(said, str) and said:
        return InvalidRequest(said)
    return EngineError("The instance's engine failed on this request; retry, or send a smaller one.")
