"""The official openai SDK against an instance: whole, streamed with usage, and a tool call."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest

from modelyard.adapters.views.db import SqliteViews
from modelyard.domain.shared import ids
from modelyard.projections.metrics.queries import requests_of_deployment

from .conftest import Yard
from .test_five_steps import poll_until

pytestmark = pytest.mark.e2e

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"input": {"type": "string"}},
                "required": ["input"],
            },
        },
    }
]


def _instance(yard: Yard) -> dict[str, object]:
    client = httpx.Client(base_url=yard.urls[0], headers={"Authorization": f"Bearer {yard.key}"}, timeout=60)
    created = client.post("/v1/provision", json={"model": "smollm2-135m"}).json()["data"]["instance"]
    return poll_until(client, str(created["id"]), "running")


def test_scripted_tool_call_and_stream_on_the_simulated_engine(simulated: Yard) -> None:
    instance = _instance(simulated)
    sdk = openai.OpenAI(base_url=str(instance["openai_base_url"]), api_key=str(instance["api_key"]))
    answer = sdk.chat.completions.create(
        model="anything",
        messages=[{"role": "user", "content": "Paris"}],
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice={"type": "function", "function": {"name": "lookup_weather"}},
    )
    call = answer.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert answer.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "lookup_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"input": "Paris"}  # type: ignore[union-attr]
    assert answer.model == "anything"

    stream = sdk.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "one two three four"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    without = list(
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "a b"}], stream=True)
    )
    assert all(c.usage is None for c in without)


def test_bad_requests_are_clear_4xx(simulated: Yard) -> None:
    instance = _instance(simulated)
    url = f"{instance['openai_base_url']}/chat/completions"
    headers = {"Authorization": f"Bearer {instance['api_key']}"}
    empty = httpx.post(url, json={"model": "m", "messages": []}, headers=headers)
    assert empty.status_code == 400
    broken = httpx.post(url, content=b"{nope", headers={**headers, "content-type": "application/json"})
    assert broken.status_code == 400
    huge = httpx.post(
        url, json={"model": "m", "messages": [{"role": "user", "content": "word " * 9000}]}, headers=headers
    )
    assert huge.status_code == 400
    assert "context" in huge.text
    ask = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    unknown = httpx.post(url, json={**ask, "bogus": 1}, headers=headers)
    assert unknown.status_code == 400
    assert "bogus" in unknown.json()["error"]["message"]
    array_schema = {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}
    for tools in ([{"bad": 1}], [{"type": "function", "function": {"name": ""}}], "x", [array_schema]):
        bad = httpx.post(url, json={**ask, "tools": tools}, headers=headers)
        assert bad.status_code == 400, bad.text
        assert bad.json()["error"]["code"] == "INVALID_REQUEST"


def test_real_model_streams_through_the_sdk_and_a_dropped_stream_frees_the_replica(embedded: Yard) -> None:
    instance = _instance(embedded)
    sdk = openai.OpenAI(base_url=str(instance["openai_base_url"]), api_key=str(instance["api_key"]))
    whole = sdk.chat.completions.create(
        model="x",
        messages=[{"role": "user", "content": "Name three colors."}],
        max_tokens=24,
        temperature=0,
        seed=7,
    )
    again = sdk.chat.completions.create(
        model="x",
        messages=[{"role": "user", "content": "Name three colors."}],
        max_tokens=24,
        temperature=0,
        seed=7,
    )
    assert whole.choices[0].message.content == again.choices[0].message.content
    assert whole.usage is not None
    assert 0 < whole.usage.completion_tokens <= 24
    stream = sdk.chat.completions.create(
        model="x",
        messages=[{"role": "user", "content": "Tell a long story about the sea."}],
        max_tokens=400,
        stream=True,
    )
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    # The replica notices the client went away and stops generating.
    replicas = _replica_metrics(embedded, str(instance["id"]))
    deadline = time.monotonic() + 30
    while any(_value(m) != 0 for m in replicas) and time.monotonic() < deadline:
        time.sleep(0.3)
        replicas = _replica_metrics(embedded, str(instance["id"]))
    assert replicas, "the replica exposes no vllm:num_requests_running"
    assert all(_value(line) == 0 for line in replicas), replicas
    cancelled = _replica_metrics(embedded, str(instance["id"]), "modelyard:requests_cancelled_total")
    assert sum(_value(line) for line in cancelled) == 1


def _value(line: str) -> float:
    """The sample's value on one line of the Prometheus text format (``0``, ``0.0``, ``1e+00``…)."""
    return float(line.rsplit(" ", 1)[1])


def _replica_metrics(yard: Yard, instance_id: str, name: str = "vllm:num_requests_running") -> list[str]:
    from modelyard.adapters.eventstore.env import store_env
    from modelyard.domain.deployments import events as ev
    from modelyard.domain.shared import ids
    from modelyard.domain.shared.store import Store
    from modelyard.settings import load_settings

    store = Store(env=store_env(load_settings(yard.env)))
    try:
        # Each replica answers only calls carrying the token it was started with.
        replicas = [(e.base_url, e.token) for e in store.events.get(ids.parse_deployment_id(instance_id))
                    if isinstance(e, ev.ReplicaStarted)]  # fmt: skip
    finally:
        store.close()
    lines = []
    for url, token in replicas:
        answer = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        lines += [line for line in answer.text.splitlines() if line.startswith(name)]
    return lines


def test_every_request_fills_the_metrics_view_once(simulated: Yard) -> None:
    instance = _instance(simulated)
    sdk = openai.OpenAI(base_url=str(instance["openai_base_url"]), api_key=str(instance["api_key"]))
    for words in ("a b", "c d e", "f"):
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": words}])
    list(sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "g h"}], stream=True))
    views = SqliteViews(Path(simulated.env["MODELYARD_DATA_DIR"]) / "views.sqlite3")
    deadline = time.monotonic() + 10
    try:
        while True:
            with views.transaction() as tx:
                served = requests_of_deployment(tx, ids.parse_deployment_id(str(instance["id"])))
            if served[0] == 4 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        views.close()
    assert served == (4, 2 + 3 + 1 + 2, 0)
