"""Request bodies: nesting bounded before decoding, every field typed and bounded, and
refusals in the client's terms."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from modelyard.api.bodies import MAX_DEPTH, decode, nesting
from modelyard.api.errors import InvalidBody
from modelyard.api.gateway.requests import ChatRequest, NativeChat, openai_body, upstream_error
from modelyard.api.instances.schemas import ProvisionRequest

ASK: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _refusal(body: object) -> InvalidBody:
    with pytest.raises(InvalidBody) as refused:
        openai_body(json.dumps(body).encode())
    return refused.value


def test_nesting_counts_brackets_outside_strings() -> None:
    assert nesting(b"[" * 10_000 + b"]" * 10_000) == 10_000
    assert nesting(b'{"a": [[1], {"b": [2]}]}') == 4
    quoted = json.dumps({"text": "[" * 5_000, "escaped": '\\"[[[' * 1_000}).encode()
    assert nesting(quoted) == 1
    assert nesting(json.dumps([[0]] * 100_000).encode()) == 2


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 10_000 + b"]" * 10_000,
        b"[" * 10_000,  # not even JSON: still measured, still refused, never a RecursionError
        b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": '
        + b"[" * (MAX_DEPTH + 1)
        + b"]" * (MAX_DEPTH + 1)
        + b"}",
    ],
)
def test_a_body_nested_too_deep_is_refused_before_decoding(raw: bytes) -> None:
    with pytest.raises(InvalidBody, match="levels deep"):
        decode(raw, ChatRequest)


def test_a_json_schema_nested_within_the_bound_is_taken() -> None:
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(20):
        schema = {"type": "object", "properties": {"inner": schema}}
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    assert openai_body(json.dumps({**ASK, "tools": [tool]}).encode()).tools


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 1000}, "n"),
        ({"stream": True, "stream_options": "yes"}, "stream_options"),
        ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": -5}, "max_completion_tokens"),
        ({"presence_penalty": 9}, "presence_penalty"),
        ({"messages": "hello"}, "messages"),
        ({"messages": []}, "messages"),
        ({"model": "m" * 10_000}, "model"),
        ({"messages": [{"role": "user"}]}, "messages[0]"),
        ({"messages": [{"role": "tool", "content": "r"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": "x", "tool_calls": []}]}, "messages[0]"),
    ],
)
def test_each_mistyped_or_out_of_bounds_field_is_named(change: dict[str, Any], param: str) -> None:
    refused = _refusal({**ASK, **change})
    assert refused.param == param
    assert param in refused.message


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"n": 2}, "n > 1 is not served"),
        ({"stream_options": {"include_usage": True}}, "only allowed when stream is true"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_what_is_not_served_is_refused_clearly(change: dict[str, Any], words: str) -> None:
    assert words in _refusal({**ASK, **change}).message


def test_what_was_accepted_is_forwarded_and_absent_fields_stay_absent() -> None:
    conversation = [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                              "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]  # fmt: skip
    body = {**ASK, "messages": conversation, "temperature": 0, "stop": "x", "n": 1, "stream": True,
            "stream_options": {"include_usage": True}, "tool_choice": "auto"}  # fmt: skip
    forwarded = openai_body(json.dumps(body).encode()).forwarded()
    assert forwarded == body
    assert "content" not in forwarded["messages"][2]


def test_native_chat_is_typed_and_bounded() -> None:
    assert decode(b'{"message": "hi", "temperature": 0.5}', NativeChat).message == "hi"
    for bad in (
        b'{"message": 5}',
        b'{"message": ""}',
        b'{"message": "x", "temperature": 7}',
        b'{"msg": "x"}',
    ):
        with pytest.raises(InvalidBody):
            decode(bad, NativeChat)


def test_an_instance_name_and_model_id_are_bounded() -> None:
    assert msgspec.convert({"model": "smollm2-135m", "name": "n" * 128}, ProvisionRequest).name == "n" * 128
    for bad in ({"model": "m", "name": "n" * 129}, {"model": "m" * 129}, {"model": ""},
                {"model": "m", "name": "x" * 9_500_000}, {"model": "m", "name": "line\nbreak"}):  # fmt: skip
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, ProvisionRequest)


def test_an_engine_failure_keeps_its_detail_to_the_log() -> None:
    failed = upstream_error(500, {"error": {"message": "The engine failed: KeyError('x') at 127.0.0.1:4100"}})
    assert failed.code == "ENGINE_ERROR"
    assert "KeyError" not in failed.message
    assert "127.0.0.1" not in failed.message
    refused = upstream_error(400, {"error": {"message": "maximum context length is 8192 tokens"}})
    assert (refused.code, refused.message) == ("INVALID_REQUEST", "maximum context length is 8192 tokens")


def test_max_completion_tokens_is_forwarded_as_the_engines_max_tokens() -> None:
    limited = openai_body(json.dumps({**ASK, "max_completion_tokens": 5}).encode())
    assert limited.forwarded()["max_tokens"] == 5
    both = openai_body(json.dumps({**ASK, "max_completion_tokens": 9, "max_tokens": 4}).encode()).forwarded()
    assert both["max_tokens"] == 4
    assert "max_completion_tokens" not in both
    assert "top_logprobs is only allowed" in _refusal({**ASK, "top_logprobs": 2}).message
