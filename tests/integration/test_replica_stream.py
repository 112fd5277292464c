"""A replica's stream when the engine outruns the client: a simulated replica process with
no delay between tokens, so events pile up while one is being sent and go out together."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import openai
import pytest

from modelyard.adapters.engines.base import ReplicaHandle, ReplicaSpec, parse_metrics
from modelyard.adapters.placement.local import LocalPlacement

pytestmark = pytest.mark.integration

WORDS = [f"w{n}" for n in range(1500)]
BODY = {
    "model": "sim",
    "messages": [{"role": "user", "content": " ".join(WORDS)}],
    "max_tokens": len(WORDS),
    "stream": True,
    "stream_options": {"include_usage": True},
}


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaHandle]:
    placement = LocalPlacement(Path(tmp_path_factory.mktemp("stream")), gpu=False)
    spec = ReplicaSpec(model="sim", engine="simulated", context_window=8192)
    yield placement.start(spec, "sim-1", deployment="dep_stream")
    placement.stop_all()


def test_every_event_arrives_once_and_in_order(replica: ReplicaHandle) -> None:
    client = openai.OpenAI(base_url=f"{replica.base_url}/v1", api_key=replica.token, max_retries=0)
    chunks = list(client.chat.completions.create(**BODY))  # type: ignore[call-overload]
    pieces = [c.delta.content for chunk in chunks for c in chunk.choices if c.delta.content]
    assert pieces == [WORDS[0], *(f" {w}" for w in WORDS[1:])]
    assert [chunk.choices[0].delta.role for chunk in chunks[:2]] == ["assistant", None]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(WORDS)


def test_a_client_that_stops_reading_gets_the_rest_when_it_reads_again(replica: ReplicaHandle) -> None:
    with (
        httpx.Client(base_url=replica.base_url, headers=replica.headers, timeout=60) as http,
        http.stream("POST", "/v1/chat/completions", json=BODY) as response,
    ):
        lines = response.iter_lines()
        first = next(line for line in lines if line)
        # The engine finishes the whole answer while nothing is read.
        deadline = time.monotonic() + 30
        while parse_metrics(http.get("/metrics").text).running and time.monotonic() < deadline:
            time.sleep(0.05)
        events = [first, *(line for line in lines if line)]
    assert events[-1] == "data: [DONE]"
    decoded = [msgspec.json.decode(e.removeprefix("data: ")) for e in events[:-1]]
    content = [c["choices"][0]["delta"].get("content") for c in decoded if c["choices"]]
    assert "".join(x for x in content if x).split(" ") == WORDS
    assert decoded[-1]["usage"]["completion_tokens"] == len(WORDS)
