"""The CPU engine through the gateway with the official openai SDK: a conversation's next
turn reuses its prompt after another conversation spoke, and a full queue answers 503.

One ``modelyard serve`` on llama.cpp (smollm2-135m) whose replica keeps no request
waiting (``MODELYARD_REPLICA_QUEUE_DEPTH=0``): one request at a time, the next refused.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from .conftest import Yard, free_port
from .test_five_steps import poll_until

pytestmark = pytest.mark.e2e

RULE = "Rule {n}: the assistant answers in plain words, keeps its answers short and never invents facts."


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    folder = tmp_path_factory.mktemp("reuse")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "POSTGRES_"))}
    env |= {"MODELYARD_DATA_DIR": str(folder / "data"), "MODELYARD_REPLICA_QUEUE_DEPTH": "0"}
    yard = Yard(env=env, cwd=folder, urls=[])
    yard.fund("5.00")
    yard.start("serve", port=free_port())
    try:
        client = httpx.Client(
            base_url=yard.urls[0], headers={"Authorization": f"Bearer {yard.key}"}, timeout=60
        )
        created = client.post("/v1/provision", json={"model": "smollm2-135m"}).json()["data"]["instance"]
        yield poll_until(client, str(created["id"]), "running")
    finally:
        yard.stop()


@pytest.fixture
def sdk(instance: dict[str, object]) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=str(instance["openai_base_url"]),
        api_key=str(instance["api_key"]),
        max_retries=0,
        timeout=300,
    )


def _system(name: str) -> str:
    """A system prompt of several hundred tokens, its conversation's own from the first word."""
    return f"You are {name}. " + " ".join(RULE.format(n=n) for n in range(30))


def _answer(sdk: openai.OpenAI, messages: list[dict[str, str]]) -> tuple[str, int]:
    """(text, cached prompt tokens) of a greedy answer."""
    reply = sdk.chat.completions.create(
        model="smollm2-135m",
        messages=messages,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=12,
    )
    usage = reply.usage
    assert usage is not None
    assert usage.prompt_tokens_details is not None
    return reply.choices[0].message.content or "", usage.prompt_tokens_details.cached_tokens or 0


def test_a_second_turn_reuses_its_prompt_after_another_conversation(
    sdk: openai.OpenAI, plain_llama: Any
) -> None:
    first = [
        {"role": "system", "content": _system(f"assistant {uuid.uuid4().hex[:8]}")},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    other = [
        {"role": "system", "content": _system(f"helper {uuid.uuid4().hex[:8]}")},
        {"role": "user", "content": "Name a colour."},
    ]
    said, cached_first = _answer(sdk, first)
    _answer(sdk, other)
    second = [*first, {"role": "assistant", "content": said}, {"role": "user", "content": "And of Italy?"}]
    answer, cached_second = _answer(sdk, second)

    # The first turn shares only the chat template's opening with anything before it; the
    # second reuses at least the whole system prompt although another conversation came between.
    assert cached_first < 20
    system_tokens = len(plain_llama.tokenize(str(first[0]["content"]).encode()))
    assert cached_second >= system_tokens
    # The same answer as llama.cpp evaluating the whole prompt afresh, with no cache at all.
    fresh = plain_llama.create_chat_completion(
        messages=second,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=12,
    )
    assert answer == fresh["choices"][0]["message"]["content"]


def test_a_full_queue_answers_503_with_retry_after(sdk: openai.OpenAI) -> None:
    counting = [{"role": "user", "content": "Count from 1 to 1000, one number per line."}]
    stream = sdk.chat.completions.create(
        model="smollm2-135m",
        messages=counting,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=1000,
        stream=True,
    )
    next(iter(stream))  # the engine is generating it
    try:
        with pytest.raises(openai.APIStatusError) as refused:
            sdk.chat.completions.create(
                model="smollm2-135m", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
            )
        assert refused.value.status_code == 503
        assert int(refused.value.response.headers["retry-after"]) >= 1
        assert refused.value.code == "ENGINE_BUSY"
        with pytest.raises(openai.APIStatusError) as streamed:
            next(
                iter(
                    sdk.chat.completions.create(
                        model="smollm2-135m",
                        messages=[{"role": "user", "content": "Hi"}],
                        max_tokens=4,
                        stream=True,
                    )
                )
            )
        assert streamed.value.status_code == 503
        assert int(streamed.value.response.headers["retry-after"]) >= 1
    finally:
        stream.close()
    # Once the stream is gone the engine takes the next request (a refusal meanwhile is not a hang).
    deadline = time.monotonic() + 60
    statuses = []
    while time.monotonic() < deadline:
        answer = httpx.post(
            f"{sdk.base_url}chat/completions",
            headers={"Authorization": f"Bearer {sdk.api_key}"},
            json={"model": "m", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 4},
            timeout=120,
        )
        statuses.append(answer.status_code)
        if answer.status_code == 200:
            break
        time.sleep(0.2)
    assert statuses[-1] == 200
    assert set(statuses) <= {200, 503}
