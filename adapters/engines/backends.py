"""What generates tokens inside a replica process: llama.cpp, or the simulated engine.

Both (the llama.cpp one lives in ``llamacpp_backend``) take an OpenAI chat request (a dict)
and yield OpenAI-shaped ``chat.completion.chunk`` deltas, so the replica server streams or
gathers them the same way. Generation is blocking; the server runs it in a thread and
sets ``cancel`` when the client goes away.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any, Protocol


class ContextOverflow(ValueError):
    """The prompt and the requested completion do not fit the model's context window."""


class Refused(ValueError):
    """The engine does not serve what the request asks for; answered 400 with the reason."""


class Backend(Protocol):
    """Generates one chat completion as a stream of chunk dicts."""

    model: str
    context_window: int

    def count_tokens(self, request: dict[str, Any]) -> int:
        """Prompt tokens of a request."""
        ...

    def generate(self, request: dict[str, Any], cancel: threading.Event) -> Iterator[dict[str, Any]]:
        """Chunks (``choices[0].delta``, ``finish_reason``), then a final one with ``usage``."""
        ...


def prompt_text(request: dict[str, Any]) -> str:
    """The text of every message, one per line (a cheap stand-in for a tokenizer's input)."""
    return "\n".join(str(m.get("content") or "") for m in request.get("messages", []))


class SimulatedBackend:
    """A deterministic engine for load and control-plane tests; named for what it is.

    It waits ``ttft_ms``, then emits words of the last user message (or "ok") at
    ``tokens_per_s``; given tools and a tool_choice that requires or names one, it calls
    that function with the user's message as its ``input`` argument.
    """

    def __init__(
        self, *, model: str, ttft_ms: float = 0.0, tokens_per_s: float = 0.0, context_window: int = 8192
    ) -> None:
        self.model, self.context_window = model, context_window
        self._ttft_s, self._rate = ttft_ms / 1000, tokens_per_s

    def count_tokens(self, request: dict[str, Any]) -> int:
        return len(prompt_text(request).split())

    def generate(self, request: dict[str, Any], cancel: threading.Event) -> Iterator[dict[str, Any]]:
        prompt_tokens = self.count_tokens(request)
        # Waiting on the cancel event, not sleeping, lets a dropped client free the replica at once.
        if cancel.wait(self._ttft_s):
            return
        tool = _forced_tool(request)
        if tool is not None:
            arguments = json.dumps({"input": _last_user(request)})
            call = {
                "index": 0,
                "id": "call_0",
                "type": "function",
                "function": {"name": tool, "arguments": arguments},
            }
            yield {"delta": {"role": "assistant", "tool_calls": [call]}, "finish_reason": None}
            yield {"delta": {}, "finish_reason": "tool_calls"}
            yield {"usage": usage(prompt_tokens, 1)}
            return
        words = (_last_user(request) or "ok").split()[: int(request.get("max_tokens") or 64)]
        sent = 0
        for word in words:
            if cancel.wait(1 / self._rate if self._rate else 0):
                return
            yield {"delta": {"content": word if sent == 0 else " " + word}, "finish_reason": None}
            sent += 1
        yield {
            "delta": {},
            "finish_reason": "stop" if sent < int(request.get("max_tokens") or 64) else "length",
        }
        yield {"usage": usage(prompt_tokens, sent)}


def _last_user(request: dict[str, Any]) -> str:
    users = [m for m in request.get("messages", []) if m.get("role") == "user"]
    return str(users[-1].get("content") or "") if users else ""


def _forced_tool(request: dict[str, Any]) -> str | None:
    tools = request.get("tools") or []
    choice = request.get("tool_choice")
    if not tools or choice in (None, "none", "auto"):
        return None
    if isinstance(choice, dict):
        return str(choice.get("function", {}).get("name"))
    return str(tools[0]["function"]["name"])


def usage(prompt: int, completion: int, *, cached: int | None = None) -> dict[str, Any]:
    """An OpenAI ``usage`` object; ``cached`` prompt tokens (reused, not evaluated) when the engine knows."""
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached is not None:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out
