"""The official ``anthropic`` SDK against an instance on real llama.cpp (smollm2-135m):
create, stream, a tool round trip, and the Messages API's refusals in its error shape."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest

from .conftest import Yard
from .test_openai_conformance import _running

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ASK = [{"role": "user", "content": "What is the capital of France? One word."}]


def test_messages_create_stream_and_a_tool_round_trip(embedded: Yard) -> None:
    instance = _running(embedded)
    key = str(instance["api_key"])
    on_instance = anthropic.Anthropic(base_url=str(instance["endpoint"]), api_key=key, max_retries=0)
    by_key = anthropic.Anthropic(base_url=embedded.urls[0], auth_token=key, max_retries=0)

    for sdk in (on_instance, by_key):
        message = sdk.messages.create(model="claude-haiku", max_tokens=8, messages=ASK)  # type: ignore[arg-type]
        assert message.type == "message"
        assert message.role == "assistant"
        assert message.model == "claude-haiku"
        assert message.content[0].type == "text"
        assert message.content[0].text
        assert message.stop_reason in ("end_turn", "max_tokens")
        assert 0 < message.usage.output_tokens <= 8
        assert message.usage.input_tokens > 0

    with on_instance.messages.stream(
        model="m",
        max_tokens=6,
        messages=ASK,
        system="Answer briefly.",  # type: ignore[arg-type]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    for kind in ("content_block_start", "content_block_delta", "content_block_stop", "message_delta"):
        assert kind in kinds
    assert final.content[0].type == "text"
    assert final.content[0].text
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 6
    assert final.usage.input_tokens > 0

    # A tool round trip: the model calls the tool, the client answers with tool_result.
    question: list[dict[str, Any]] = [{"role": "user", "content": "What's the weather in Paris?"}]
    called = on_instance.messages.create(
        model="m",
        max_tokens=40,
        messages=question,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    assert called.stop_reason == "tool_use"
    use = next(block for block in called.content if block.type == "tool_use")
    assert use.name == "get_weather"
    assert isinstance(use.input, dict)
    assert isinstance(use.input["city"], str)
    result = {"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 24 degrees."}
    answered = on_instance.messages.create(
        model="m",
        max_tokens=16,
        messages=[  # type: ignore[list-item]
            *question,
            {"role": "assistant", "content": called.content},
            {"role": "user", "content": [result]},
        ],
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "none"},
    )
    assert answered.content[0].type == "text"
    assert answered.content[0].text
    with on_instance.messages.stream(
        model="m",
        max_tokens=40,
        messages=question,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "get_weather"},
    ) as streamed_call:
        streamed = streamed_call.get_final_message()
    streamed_use = next(block for block in streamed.content if block.type == "tool_use")
    assert isinstance(streamed_use.input["city"], str)  # type: ignore[union-attr]


def test_messages_refusals_are_in_anthropics_error_shape(embedded: Yard) -> None:
    instance = _running(embedded)
    key = str(instance["api_key"])
    url = f"{instance['endpoint']}/v1/messages"
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    body = {"model": "m", "max_tokens": 4, "messages": ASK}

    no_max = httpx.post(url, json={"model": "m", "messages": ASK}, headers=headers, timeout=60)
    assert no_max.status_code == 400
    assert no_max.json()["type"] == "error"
    assert no_max.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in no_max.json()["error"]["message"]
    no_version = httpx.post(url, json=body, headers={"x-api-key": key}, timeout=60)
    assert no_version.status_code == 400
    assert "anthropic-version" in no_version.json()["error"]["message"]
    odd = {**headers, "anthropic-version": "1999-01-01"}
    odd_version = httpx.post(url, json=body, headers=odd, timeout=60)
    assert odd_version.status_code == 400
    no_key = httpx.post(url, json=body, headers={"anthropic-version": "2023-06-01"}, timeout=60)
    assert no_key.status_code == 401
    assert no_key.json()["error"]["type"] == "authentication_error"
    stranger = anthropic.Anthropic(base_url=str(instance["endpoint"]), api_key="auxk_nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        stranger.messages.create(model="m", max_tokens=4, messages=ASK)  # type: ignore[arg-type]
    sdk = anthropic.Anthropic(base_url=str(instance["endpoint"]), api_key=key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as top_k:
        sdk.messages.create(
            model="m",
            max_tokens=4,
            messages=ASK,
            extra_body={"top_k": 5},  # type: ignore[arg-type]
        )
    assert "top_k" in str(top_k.value)
