"""OpenAI conformance of every chat route, with the official ``openai`` SDK on a real
llama.cpp replica of smollm2-135m: what current clients send is honoured or refused with a
clear 400, never silently ignored.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from modelyard.adapters.engines.models import gguf_paths

from .conftest import Yard
from .test_five_steps import poll_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

COUNT = [{"role": "user", "content": "Count from one to fifty, one number a line."}]
CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}


def _running(yard: Yard) -> dict[str, Any]:
    client = httpx.Client(base_url=yard.urls[0], headers={"Authorization": f"Bearer {yard.key}"}, timeout=60)
    created = client.post("/v1/provision", json={"model": "smollm2-135m"}).json()["data"]["instance"]
    return poll_until(client, str(created["id"]), "running")


def _chatml_tokens(text: str) -> int:
    """How many tokens the model's own tokenizer makes of one user turn in ChatML."""
    from llama_cpp import Llama

    vocab = Llama(model_path=str(gguf_paths("")["smollm2-135m"]), vocab_only=True, verbose=False)
    prompt = f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
    return len(vocab.tokenize(prompt.encode(), add_bos=True, special=True))


def test_openai_fields_are_honoured_or_refused_on_every_chat_route(embedded: Yard) -> None:
    instance = _running(embedded)
    key = str(instance["api_key"])
    on_instance = openai.OpenAI(base_url=str(instance["openai_base_url"]), api_key=key, max_retries=0)
    by_key = openai.OpenAI(base_url=f"{embedded.urls[0]}/v1", api_key=key, max_retries=0)

    # max_completion_tokens bounds the answer on both OpenAI routes; usage counts the prompt
    # with the model's tokenizer (the ChatML turn), not an estimate from the text.
    for sdk in (on_instance, by_key):
        short = sdk.chat.completions.create(
            model="gpt-4o",
            messages=COUNT,
            max_completion_tokens=5,
            temperature=0,  # type: ignore[arg-type]
        )
        assert short.usage is not None
        assert 0 < short.usage.completion_tokens <= 5
        assert short.choices[0].finish_reason == "length"
        assert short.usage.prompt_tokens == _chatml_tokens(COUNT[0]["content"])
        assert short.model == "gpt-4o"
    native = httpx.post(
        f"{instance['endpoint']}/chat",
        json={"message": COUNT[0]["content"], "max_tokens": 5},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert native.status_code == 200, native.text
    assert 0 < native.json()["data"]["usage"]["completion_tokens"] <= 5

    # A tool round trip as clients send it back: the assistant's call without content.
    calls = [{"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]
    followed = on_instance.chat.completions.create(
        model="m",
        messages=[  # type: ignore[list-item]
            {"role": "user", "content": "What time is it?"},
            {"role": "assistant", "tool_calls": calls},
            {"role": "tool", "tool_call_id": "call_1", "content": "It is 14:05."},
        ],
        max_tokens=12,
        temperature=0,
    )
    assert followed.choices[0].message.content

    # Streams are server-sent events, with the header SSE clients check.
    with on_instance.chat.completions.with_streaming_response.create(
        model="m",
        messages=COUNT,
        max_tokens=3,
        stream=True,  # type: ignore[arg-type]
    ) as streamed:
        assert streamed.headers["content-type"].startswith("text/event-stream")
        chunks = list(streamed.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    # The models under the OpenAI base URL.
    assert [m.id for m in on_instance.models.list()] == ["smollm2-135m"]
    assert on_instance.models.retrieve("smollm2-135m").id == "smollm2-135m"
    with pytest.raises(openai.NotFoundError) as unknown:
        on_instance.models.retrieve("gpt-4o")
    assert unknown.value.code == "MODEL_NOT_FOUND"

    # response_format is enforced by a grammar on llama.cpp.
    as_json = on_instance.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Describe a person."}],
        response_format={"type": "json_object"},
        max_tokens=60,
        temperature=0,
    )
    assert isinstance(json.loads(as_json.choices[0].message.content or ""), dict)
    city = on_instance.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Name a big city."}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": CITY_SCHEMA}},
        max_tokens=60,
        temperature=0,
    )
    parsed = json.loads(city.choices[0].message.content or "")
    assert set(parsed) == {"city", "population"}
    assert isinstance(parsed["city"], str)
    assert isinstance(parsed["population"], int)

    # What is not served is a clear 400 in OpenAI's error shape, never silently dropped.
    for refused, said in (({"n": 2}, "n > 1"), ({"logprobs": True}, "logprobs")):
        with pytest.raises(openai.BadRequestError) as bad:
            on_instance.chat.completions.create(model="m", messages=COUNT, max_tokens=3, **refused)  # type: ignore[call-overload]
        assert bad.value.code == "INVALID_REQUEST"
        assert said in bad.value.message
    # A refusal of a streamed request is a 400 too, not an empty stream under a 200.
    with pytest.raises(openai.BadRequestError) as streamed_refusal:
        on_instance.chat.completions.create(model="m", messages=COUNT, stream=True, logprobs=True)  # type: ignore[arg-type]
    assert "logprobs" in streamed_refusal.value.message
    with pytest.raises(openai.AuthenticationError) as wrong_key:
        openai.OpenAI(
            base_url=str(instance["openai_base_url"]), api_key="auxk_nope", max_retries=0
        ).models.list()
    assert wrong_key.value.code == "INVALID_API_KEY"
