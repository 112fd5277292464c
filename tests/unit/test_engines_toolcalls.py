"""Tool calls in OpenAI's streamed shape: llama-cpp's fragments normalized, fragments merged whole."""

from __future__ import annotations

import json
from typing import Any

from modelyard.adapters.engines.llamacpp_backend import openai_delta
from modelyard.adapters.engines.replica import merge_tool_call


def _llama_fragment(arguments: str) -> dict[str, Any]:
    # llama-cpp repeats id, name and the legacy function_call in every fragment.
    call = {
        "index": 0,
        "id": "call__0_f",
        "type": "function",
        "function": {"name": "f", "arguments": arguments},
    }
    return {
        "role": None,
        "content": None,
        "function_call": {"name": "f", "arguments": arguments},
        "tool_calls": [call],
    }


def test_only_the_first_fragment_names_the_call() -> None:
    named: set[int] = set()
    deltas = [openai_delta(_llama_fragment(part), named) for part in ('{"a"', ": 1", "}")]
    assert all("function_call" not in d and "role" not in d and "content" not in d for d in deltas)
    first, *rest = [d["tool_calls"][0] for d in deltas]
    assert first == {
        "index": 0,
        "id": "call__0_f",
        "type": "function",
        "function": {"name": "f", "arguments": '{"a"'},
    }
    assert rest == [
        {"index": 0, "function": {"arguments": ": 1"}},
        {"index": 0, "function": {"arguments": "}"}},
    ]


def test_plain_content_passes_through() -> None:
    assert openai_delta({"content": "hi", "role": None}, set()) == {"content": "hi"}


def test_fragments_merge_into_whole_calls_per_index() -> None:
    calls: dict[int, dict[str, Any]] = {}
    fragments = [
        {"index": 0, "id": "c0", "type": "function", "function": {"name": "f", "arguments": '{"x":'}},
        {"index": 1, "id": "c1", "type": "function", "function": {"name": "g", "arguments": "{}"}},
        {"index": 0, "function": {"arguments": " 2}"}},
    ]
    for fragment in fragments:
        merge_tool_call(calls, fragment)
    assert calls[0] == {"id": "c0", "type": "function", "function": {"name": "f", "arguments": '{"x": 2}'}}
    assert json.loads(calls[0]["function"]["arguments"]) == {"x": 2}
    assert calls[1]["function"] == {"name": "g", "arguments": "{}"}
