"""The engine's OpenAI answer in Anthropic's Messages shape: whole, or as Anthropic's stream
of events (``message_start``, ``content_block_start``, ``content_block_delta``,
``content_block_stop``, ``message_delta``, ``message_stop``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from modelyard.domain.shared.errors import ModelyardError

# OpenAI's finish reasons as Anthropic's stop reasons.
STOP_REASON = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


def message_id() -> str:
    """A Messages id, ``msg_`` and 24 hex digits."""
    return f"msg_{uuid.uuid4().hex[:24]}"


def _usage(usage: dict[str, Any]) -> dict[str, int]:
    return {
        "input_tokens": int(usage.get("prompt_tokens", 0)),
        "output_tokens": int(usage.get("completion_tokens", 0)),
    }


def _input(arguments: str) -> dict[str, Any]:
    """A call's arguments as the ``input`` object (an engine's broken JSON stays visible as text)."""
    try:
        parsed = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return {"arguments": arguments}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def whole(answer: dict[str, Any], model: str) -> dict[str, Any]:
    """A whole ``chat.completion`` as an Anthropic ``message``."""
    choice = answer["choices"][0]
    said = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if said.get("content"):
        content.append({"type": "text", "text": said["content"]})
    for call in said.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": _tool_use_id(call.get("id")),
                "name": function.get("name"),
                "input": _input(function.get("arguments", "")),
            }
        )
    return {
        "id": message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASON.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": _usage(answer.get("usage") or {}),
    }


def _tool_use_id(call_id: Any) -> str:
    """Anthropic's ``toolu_`` ids; an engine's own id is kept inside it, so it maps back."""
    return (
        f"toolu_{call_id}" if call_id and not str(call_id).startswith("toolu_") else str(call_id or "toolu_0")
    )


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


class _Blocks:
    """Which content block is open, so each delta lands in one and each is closed once."""

    def __init__(self) -> None:
        self.index, self.kind, self.calls = -1, "", dict[int, int]()

    def open(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        out = self.close()
        self.index, self.kind = self.index + 1, kind
        return [*out, _event("content_block_start", {"index": self.index, "content_block": block})]

    def close(self) -> list[bytes]:
        if not self.kind:
            return []
        self.kind = ""
        return [_event("content_block_stop", {"index": self.index})]


async def events(chunks: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]:
    """The gateway's OpenAI events (``data: {chunk}`` lines) as Anthropic's stream."""
    start: dict[str, Any] = {"id": message_id(), "type": "message", "role": "assistant", "model": model}
    start |= {
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    yield _event("message_start", {"message": start})
    blocks, finish, usage = _Blocks(), "stop", dict[str, Any]()
    try:
        async for line in chunks:
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                finish = choice.get("finish_reason") or finish
                for out in _delta(blocks, choice.get("delta") or {}):
                    yield out
    except ModelyardError as failed:
        # Past the status line a failure can only be said in the stream, as Anthropic does.
        yield _event("error", {"error": {"type": "api_error", "message": failed.message}})
        return
    for out in blocks.close():
        yield out
    delta = {"stop_reason": STOP_REASON.get(finish, "end_turn"), "stop_sequence": None}
    yield _event("message_delta", {"delta": delta, "usage": _usage(usage)})
    yield _event("message_stop", {})


def _delta(blocks: _Blocks, delta: dict[str, Any]) -> list[bytes]:
    """One OpenAI delta as Anthropic events: text into a text block, each call into its own."""
    out: list[bytes] = []
    if delta.get("content"):
        if blocks.kind != "text":
            out += blocks.open("text", {"type": "text", "text": ""})
        text = {"type": "text_delta", "text": delta["content"]}
        out.append(_event("content_block_delta", {"index": blocks.index, "delta": text}))
    for call in delta.get("tool_calls") or []:
        index = int(call.get("index", 0))
        function = call.get("function") or {}
        if index not in blocks.calls:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": _tool_use_id(call.get("id")),
                "name": function.get("name"),
                "input": {},
            }
            out += blocks.open("tool_use", block)
            blocks.calls[index] = blocks.index
        if function.get("arguments"):
            partial = {"type": "input_json_delta", "partial_json": function["arguments"]}
            out.append(_event("content_block_delta", {"index": blocks.calls[index], "delta": partial}))
    return out
