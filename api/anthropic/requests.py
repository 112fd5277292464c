"""Anthropic's Messages request, typed and bounded as Anthropic bounds it, and its translation
into the OpenAI chat request every engine serves.

A field Anthropic does not take is refused (as Anthropic does); ``max_tokens`` is required;
a field the engines cannot honour (``top_k``, images for a text model) is refused with a
clear 400 rather than dropped. ``tool_result`` blocks become OpenAI ``tool`` messages and
``tool_use`` blocks the assistant's ``tool_calls``, so a tool round trip reaches the model
whole.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from modelyard.api.bodies import decode
from modelyard.domain.shared.errors import InvalidRequest

Short = Annotated[str, Meta(max_length=256)]
ToolName = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
# The Messages API's first version: every dated version since keeps the shapes these routes
# speak (later ones add fields, which are refused by name if the engines cannot honour them).
FIRST_VERSION = "2023-01-01"
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class _Body(Struct, frozen=True, forbid_unknown_fields=True):
    """A request part; an unknown field is refused. Subclasses repeat ``frozen`` for mypy."""


class CacheControl(_Body, frozen=True):
    """A prompt-caching hint: taken, and harmless to ignore (it changes cost, not answers)."""

    type: Literal["ephemeral"]
    ttl: Short | UnsetType = UNSET


class TextBlock(_Body, frozen=True, tag="text", tag_field="type"):
    """``{"type": "text", "text": …}``."""

    text: str
    cache_control: CacheControl | UnsetType | None = UNSET
    citations: list[Any] | UnsetType | None = UNSET


class ImageBlock(_Body, frozen=True, tag="image", tag_field="type"):
    """An image; a text-only engine refuses it by name."""

    source: dict[str, Any]
    cache_control: CacheControl | UnsetType | None = UNSET


class ToolUseBlock(_Body, frozen=True, tag="tool_use", tag_field="type"):
    """An assistant's earlier tool call, replayed."""

    id: Short
    name: ToolName
    input: dict[str, Any]
    cache_control: CacheControl | UnsetType | None = UNSET


class ToolResultBlock(_Body, frozen=True, tag="tool_result", tag_field="type"):
    """The answer to a tool call, by its ``tool_use_id``."""

    tool_use_id: Short
    content: str | list[TextBlock] | UnsetType = UNSET
    is_error: bool | UnsetType = UNSET
    cache_control: CacheControl | UnsetType | None = UNSET


Block = TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock


class Message(_Body, frozen=True):
    """One turn of the conversation."""

    role: Literal["user", "assistant"]
    content: str | Annotated[list[Block], Meta(min_length=1)]


class Tool(_Body, frozen=True):
    """A tool the model may call; ``input_schema`` a JSON Schema object."""

    name: ToolName
    input_schema: dict[str, Any]
    description: str | UnsetType = UNSET
    cache_control: CacheControl | UnsetType | None = UNSET
    type: Literal["custom"] | UnsetType = UNSET


class ToolChoice(_Body, frozen=True):
    """``auto``, ``any`` (some tool), ``tool`` (the one named) or ``none``."""

    type: Literal["auto", "any", "tool", "none"]
    name: ToolName | UnsetType = UNSET
    disable_parallel_tool_use: bool | UnsetType = UNSET

    def __post_init__(self) -> None:
        """``name`` goes with ``tool`` and only there."""
        if (self.type == "tool") != (self.name is not UNSET):
            raise ValueError("tool_choice takes a name exactly when its type is 'tool'")


class Metadata(_Body, frozen=True):
    """Who the request is for."""

    user_id: Short | UnsetType | None = UNSET


class MessagesRequest(_Body, frozen=True):
    """``POST /v1/messages``: Anthropic's request, field for field."""

    model: Annotated[str, Meta(min_length=1, max_length=256)]
    max_tokens: Annotated[int, Meta(ge=1, le=2**31 - 1)]
    messages: Annotated[list[Message], Meta(min_length=1)]
    system: str | list[TextBlock] | UnsetType = UNSET
    stop_sequences: Annotated[list[str], Meta(max_length=4)] | UnsetType = UNSET
    stream: bool | UnsetType = UNSET
    temperature: Annotated[float, Meta(ge=0, le=1)] | UnsetType = UNSET
    top_p: Annotated[float, Meta(ge=0, le=1)] | UnsetType = UNSET
    top_k: Annotated[int, Meta(ge=0)] | UnsetType = UNSET
    tools: Annotated[list[Tool], Meta(max_length=128)] | UnsetType = UNSET
    tool_choice: ToolChoice | UnsetType = UNSET
    metadata: Metadata | UnsetType = UNSET

    def __post_init__(self) -> None:
        """What the engines cannot honour, refused rather than dropped."""
        if self.top_k is not UNSET:
            raise ValueError("top_k is not served by these engines; leave it out")
        if self.tool_choice is not UNSET and self.tool_choice.type != "none" and not self.tools:
            raise ValueError("tool_choice needs tools")

    @property
    def streamed(self) -> bool:
        """Whether the client asked for server-sent events."""
        return bool(self.stream)


def messages_body(raw: bytes) -> MessagesRequest:
    """A Messages request body, checked as Anthropic checks it (``max_tokens`` included)."""
    return decode(raw, MessagesRequest)


def check_version(version: str | None) -> None:
    """Refuse a request without an ``anthropic-version`` header, or with one that is not a
    dated version of the Messages API, as Anthropic does."""
    if not version:
        raise InvalidRequest("anthropic-version: header is required (for example 2023-06-01).")
    if not _VERSION.match(version) or version < FIRST_VERSION:
        raise InvalidRequest(f"anthropic-version {version[:40]!r} is not a version of the Messages API.")


def to_openai(request: MessagesRequest) -> dict[str, Any]:
    """The OpenAI chat request that asks the engine for the same answer."""
    messages: list[dict[str, Any]] = []
    if request.system is not UNSET:
        system = request.system if isinstance(request.system, str) else _joined(request.system)
        messages.append({"role": "system", "content": system})
    for message in request.messages:
        messages += _turn(message)
    body: dict[str, Any] = {"messages": messages, "max_tokens": request.max_tokens}
    for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p"), ("stop_sequences", "stop")):
        if (value := getattr(request, ours)) is not UNSET:
            body[theirs] = value
    if request.tools:
        body["tools"] = [_tool(tool) for tool in request.tools]
    if request.tool_choice is not UNSET:
        body["tool_choice"] = _choice(request.tool_choice)
    return body


def _joined(blocks: list[TextBlock]) -> str:
    return "\n".join(block.text for block in blocks)


def _turn(message: Message) -> list[dict[str, Any]]:
    """One Anthropic turn as OpenAI messages: tool results first, as ``tool`` messages."""
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    out: list[dict[str, Any]] = []
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ImageBlock):
            raise InvalidRequest("This model reads text only; it cannot take an image block.")
        elif isinstance(block, ToolUseBlock):
            arguments = json.dumps(block.input)
            calls.append(
                {"id": block.id, "type": "function", "function": {"name": block.name, "arguments": arguments}}
            )
        else:
            out.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": _result_text(block)})
    if message.role == "assistant":
        if out:
            raise InvalidRequest("tool_result blocks belong in user turns.")
        turn: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
        return [turn | ({"tool_calls": calls} if calls else {})]
    if calls:
        raise InvalidRequest("tool_use blocks belong in assistant turns.")
    return out + ([{"role": "user", "content": "\n".join(texts)}] if texts else [])


def _result_text(block: ToolResultBlock) -> str:
    text = "" if block.content is UNSET else block.content
    text = text if isinstance(text, str) else _joined(text)
    return f"Error: {text}" if block.is_error else text


def _tool(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema}
    if tool.description is not UNSET:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def _choice(choice: ToolChoice) -> Any:
    if choice.type == "tool":
        return {"type": "function", "function": {"name": choice.name}}
    return {"auto": "auto", "any": "required", "none": "none"}[choice.type]
