"""The inference routes' request shapes and checks, and how an engine's refusal is answered."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.response import Response

from modelyard.domain.shared.errors import InvalidRequest


class NativeChat(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/{instanceId}/chat``."""

    message: str
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None


# The chat.completions request fields this gateway accepts; like OpenAI, it refuses others.
CHAT_FIELDS = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed",
    "stream", "stream_options", "tools", "tool_choice", "user", "n", "presence_penalty", "frequency_penalty",
    "response_format", "parallel_tool_calls", "logit_bias", "metadata", "store",
})  # fmt: skip


def openai_body(raw: bytes) -> dict[str, Any]:
    """An OpenAI chat.completions request body, checked as OpenAI checks it."""
    try:
        body = msgspec.json.decode(raw or b"null")
    except msgspec.DecodeError:
        raise InvalidRequest("The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.")
    unknown = sorted(set(body) - CHAT_FIELDS)
    if unknown:
        raise InvalidRequest(f"Unrecognized request argument supplied: {', '.join(unknown)}.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.")
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise InvalidRequest("Each message must be an object with a 'role'.")
    _check_tools(body.get("tools"))
    return body


def _check_tools(tools: Any) -> None:
    """Tools in the OpenAI shape: function tools with a name and an object schema."""
    if tools is None:
        return
    if not isinstance(tools, list) or not tools:
        raise InvalidRequest("'tools' must be a non-empty array.")
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise InvalidRequest(f"tools[{i}] must be {{'type': 'function', 'function': {{...}}}}.")
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise InvalidRequest(f"tools[{i}].function.name must be a non-empty string.")
        parameters = function.get("parameters", {"type": "object"})
        if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
            raise InvalidRequest(f"tools[{i}].function.parameters must be a JSON Schema object.")


def upstream_error(status: int, answer: dict[str, Any]) -> Response[Any]:
    """An engine's refusal in OpenAI's error shape: 400 for the request, 502 for the engine."""
    found = answer.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    return Response(
        {
            "error": {
                "message": error.get("message", "The engine refused the request."),
                "type": "invalid_request_error",
                "code": error.get("code", "invalid_request"),
            }
        },
        status_code=400 if status < 500 else 502,
    )
