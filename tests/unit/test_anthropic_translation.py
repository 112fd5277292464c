"""Anthropic's Messages request into the engines' OpenAI chat, and their answers back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import pytest

from modelyard.api.anthropic import replies
from modelyard.api.anthropic.requests import check_version, messages_body, to_openai
from modelyard.api.errors import InvalidBody
from modelyard.domain.shared.errors import InstanceNotRunning, InvalidRequest


def test_a_tool_round_trip_becomes_openai_tool_messages() -> None:
    raw = {
        "model": "m",
        "max_tokens": 9,
        "system": [{"type": "text", "text": "Be brief."}],
        "stop_sequences": ["END"],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"}],
            },
        ],
        "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any"},
    }
    body = to_openai(messages_body(json.dumps(raw).encode()))
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"},
    ]
    assert body["max_tokens"] == 9
    assert body["stop"] == ["END"]
    assert body["tool_choice"] == "required"
    assert body["tools"][0]["function"] == {"name": "weather", "parameters": {"type": "object"}}


def test_what_anthropic_refuses_is_refused() -> None:
    with pytest.raises(InvalidBody, match="max_tokens"):
        messages_body(b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}')
    with pytest.raises(InvalidBody, match="bogus"):
        messages_body(
            b'{"model": "m", "max_tokens": 1, "bogus": 1, "messages": [{"role": "user", "content": "x"}]}'
        )
    for version in (None, "", "latest", "2022-12-31"):
        with pytest.raises(InvalidRequest, match="anthropic-version"):
            check_version(version)
    check_version("2023-06-01")


def test_openai_chunks_become_anthropics_events_in_order() -> None:
    chunks = [
        {"choices": [{"delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}]},
        {"choices": [{"delta": {"content": " there"}, "finish_reason": None}]},
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [{"index": 0, "id": "c0", "function": {"name": "f", "arguments": "{}"}}]
                    },
                    "finish_reason": None,
                }
            ]
        },
        {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}},
    ]

    async def lines() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield b"data: " + json.dumps(chunk).encode()
        yield b"data: [DONE]"

    async def collect() -> list[dict[str, object]]:
        out = []
        async for event in replies.events(lines(), "m"):
            name, data = event.decode().strip().split("\n")
            payload = json.loads(data.removeprefix("data: "))
            assert name == f"event: {payload['type']}"
            out.append(payload)
        return out

    events = anyio.run(collect)
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[5]["content_block"] == {"type": "tool_use", "id": "toolu_c0", "name": "f", "input": {}}
    assert events[8]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert events[8]["usage"] == {"input_tokens": 7, "output_tokens": 3}


def test_a_failure_mid_stream_is_an_error_event() -> None:
    async def lines() -> AsyncIterator[bytes]:
        yield b'data: {"choices": [{"delta": {"content": "Hi"}, "finish_reason": null}]}'
        raise InstanceNotRunning("The replica stopped answering mid-reply; retry.")

    async def collect() -> list[str]:
        return [event.decode() async for event in replies.events(lines(), "m")]

    events = anyio.run(collect)
    assert events[-1].startswith("event: error\n")
    assert "stopped answering" in events[-1]
    assert not any(e.startswith("event: message_stop") for e in events)
