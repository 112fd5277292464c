"""The simulated replica as a real process: scripted tool calls through the openai SDK, cancellation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from modelyard.adapters.engines.base import EngineStats, ReplicaHandle, ReplicaSpec, parse_metrics
from modelyard.adapters.placement.local import LocalPlacement

pytestmark = pytest.mark.integration

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a word up",
            "parameters": {"type": "object", "properties": {"input": {"type": "string"}}},
        },
    },
    {
        "type": "function",
        "function": {"name": "translate", "parameters": {"type": "object", "properties": {}}},
    },
]


@pytest.fixture(scope="module")
def replica_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("simulated"))


@pytest.fixture(scope="module")
def replica(replica_logs: Path) -> Iterator[ReplicaHandle]:
    placement = LocalPlacement(replica_logs, gpu=False)
    # 40 tokens/s: slow enough that a long answer is still generating when the client leaves.
    spec = ReplicaSpec(model="sim-model", engine="simulated", ttft_ms=20, tokens_per_s=40)
    yield placement.start(spec, "sim-1", deployment="dep_sim")
    placement.stop_all()


@pytest.fixture
def client(replica: ReplicaHandle) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{replica.base_url}/v1", api_key=replica.token, max_retries=0)


def _stats(replica: ReplicaHandle) -> EngineStats:
    return parse_metrics(httpx.get(f"{replica.base_url}/metrics", headers=replica.headers).text)


def _metric(replica: ReplicaHandle, name: str) -> float:
    for line in httpx.get(f"{replica.base_url}/metrics", headers=replica.headers).text.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} is not exposed")


def test_a_named_tool_choice_gets_the_scripted_call(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="sim-model",
        messages=[{"role": "user", "content": "define serendipity"}],
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice={"type": "function", "function": {"name": "translate"}},
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    assert len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "translate"
    assert json.loads(call.function.arguments) == {"input": "define serendipity"}  # type: ignore[union-attr]


def test_required_tool_choice_streams_the_call(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="sim-model",
        messages=[{"role": "user", "content": "look it up"}],
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice="required",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    calls = [c for chunk in chunks for choice in chunk.choices for c in choice.delta.tool_calls or []]
    assert [c.function.name for c in calls if c.function] == ["lookup"]
    assert [ch.finish_reason for chunk in chunks for ch in chunk.choices if ch.finish_reason] == [
        "tool_calls"
    ]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 1


def test_auto_tool_choice_answers_in_words(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="sim-model",
        messages=[{"role": "user", "content": "just talk"}],
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice="auto",
        max_tokens=10,
    )
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].message.content == "just talk"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 2


def test_a_client_that_leaves_mid_stream_stops_the_generation(replica: ReplicaHandle) -> None:
    before = _metric(replica, "modelyard:engine_chunks_total")
    words = " ".join(f"w{i}" for i in range(400))
    body = {"model": "m", "stream": True, "max_tokens": 400, "messages": [{"role": "user", "content": words}]}
    with (
        httpx.Client(base_url=replica.base_url, headers=replica.headers, timeout=30) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        lines = response.iter_lines()
        received = [line for line in (next(lines) for _ in range(8)) if line.startswith("data: ")]
        assert len(received) >= 3
        assert _stats(replica).running == 1
    # The engine notices at its next token; poll the replica's own gauges until it has.
    deadline = time.monotonic() + 20
    while _metric(replica, "modelyard:engine_generations_active") and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = _stats(replica)
    assert (stats.running, stats.waiting) == (0, 0)
    assert _metric(replica, "modelyard:engine_generations_active") == 0
    produced = _metric(replica, "modelyard:engine_chunks_total") - before
    # At 40 tokens/s all 400 would take ten seconds; the generation stopped long before.
    assert produced < 100
    assert _metric(replica, "modelyard:requests_cancelled_total") >= 1


def test_models_health_and_ttft_metrics(replica: ReplicaHandle, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["sim-model"]
    assert httpx.get(f"{replica.base_url}/health", headers=replica.headers).json()["status"] == "ok"
    before = _stats(replica)
    client.chat.completions.create(model="x", messages=[{"role": "user", "content": "a b c"}])
    after = _stats(replica)
    assert after.ttft_count == before.ttft_count + 1
    assert after.generation_tokens == before.generation_tokens + 3
    assert after.prompt_tokens == before.prompt_tokens + 3
    # The replica waits 20 ms before its first token, so no request lands under 10 ms.
    assert after.ttft_buckets[0.01] == 0
    assert after.ttft_percentile_s(50) is not None


def test_a_malformed_request_is_an_openai_style_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="x", messages=[])
    assert caught.value.status_code == 400
    assert "messages" in caught.value.message


def test_bad_json_and_bad_max_tokens_are_400s(replica: ReplicaHandle) -> None:
    url = f"{replica.base_url}/v1/chat/completions"
    broken = httpx.post(
        url, content=b"{not json", headers={"Content-Type": "application/json", **replica.headers}
    )
    assert broken.status_code == 400
    assert broken.json()["error"]["type"] == "invalid_request_error"
    messages = [{"role": "user", "content": "hi"}]
    for bad in (0, -3, "ten"):
        reply = httpx.post(url, json={"messages": messages, "max_tokens": bad}, headers=replica.headers)
        assert reply.status_code == 400
        assert "max_tokens" in reply.json()["error"]["message"]


def test_a_refusal_is_logged_with_its_reason(replica: ReplicaHandle, replica_logs: Path) -> None:
    answer = httpx.post(
        f"{replica.base_url}/v1/chat/completions",
        json={"model": "sim-model", "messages": []},
        headers=replica.headers,
    )
    assert answer.status_code == 400
    expected = "refused 400 invalid_request_error: 'messages' must be a non-empty array."
    log = replica_logs / "sim-1.log"
    deadline = time.monotonic() + 10
    while expected not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.05)
    assert "WARNING modelyard.adapters.engines.replica" in log.read_text()


@pytest.mark.parametrize("path", ["/health", "/metrics", "/v1/models", "/v1/chat/completions"])
def test_every_route_refuses_a_call_without_the_replicas_token(replica: ReplicaHandle, path: str) -> None:
    url = f"{replica.base_url}{path}"
    body = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}]}

    def call(headers: dict[str, str]) -> httpx.Response:
        if path.endswith("completions"):
            return httpx.post(url, json=body, headers=headers)
        return httpx.get(url, headers=headers)

    assert replica.token
    assert call({}).status_code == 401
    assert call({"Authorization": "Bearer someone-elses-token"}).status_code == 403
    assert call({"Authorization": f"Basic {replica.token}"}).status_code == 403
    assert call(replica.headers).status_code == 200


def test_the_token_is_in_no_log_line_and_not_on_the_command_line(
    replica: ReplicaHandle, replica_logs: Path
) -> None:
    httpx.get(f"{replica.base_url}/health", headers={"Authorization": "Bearer wrong"})
    assert replica.pid is not None
    cmdline = Path(f"/proc/{replica.pid}/cmdline").read_bytes()
    assert replica.token.encode() not in cmdline
    for log in replica_logs.glob("*.log*"):
        assert replica.token not in log.read_text(errors="replace")
    assert replica.token not in repr(replica)
