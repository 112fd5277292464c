"""Embeddings, rerank and audio end to end: ``modelyard serve``, real models on the CPU
(all-MiniLM-L6-v2, Whisper tiny.en, espeak-ng), the official openai SDK and plain HTTP.

One server and one instance of each model for the whole module: each model loads once.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from modelyard.adapters.services.speech import ensure_espeak
from modelyard.adapters.views.db import SqliteViews
from modelyard.domain.shared import ids
from modelyard.projections.audio.queries import audio_by_model
from modelyard.projections.metrics.queries import usage_of_deployment

from .conftest import Yard, free_port
from .test_five_steps import poll_until

pytestmark = pytest.mark.e2e

SENTENCE = "The quick brown fox jumps over the lazy dog."
MODELS = ("all-minilm-l6-v2", "whisper-tiny-en", "espeak-ng")


class Served:
    """The running server, a management client, and an instance of each model."""

    def __init__(self, yard: Yard) -> None:
        self.yard = yard
        self.http = httpx.Client(
            base_url=yard.urls[0], headers={"Authorization": f"Bearer {yard.key}"}, timeout=120
        )
        created = {
            model: self.http.post("/v1/provision", json={"model": model}).json()["data"]["instance"]
            for model in MODELS
        }
        self.instances = {
            model: poll_until(self.http, str(i["id"]), "running") for model, i in created.items()
        }

    def sdk(self, model: str) -> openai.OpenAI:
        instance = self.instances[model]
        return openai.OpenAI(
            base_url=str(instance["openai_base_url"]), api_key=str(instance["api_key"]), max_retries=0
        )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    ensure_espeak()
    tmp = tmp_path_factory.mktemp("media")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "POSTGRES_"))}
    # The module makes more public calls a minute than the free plan's 10: lift its limit.
    limits = {"MODELYARD_PLAN_LIMITS": "free=1000/10000000"}
    yard = Yard(env=env | limits | {"MODELYARD_DATA_DIR": str(tmp / "data")}, cwd=tmp, urls=[])
    yard.fund("5.00")
    yard.start("serve", port=free_port())
    try:
        yield Served(yard)
    finally:
        yard.stop()


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


def test_openai_sdk_embeddings_on_the_instance(served: Served) -> None:
    sdk = served.sdk("all-minilm-l6-v2")
    texts = ["A cat sits on the mat.", "A kitten rests on a rug.", "Interest rates rose again."]
    answer = sdk.embeddings.create(model="my-embedder", input=texts)
    assert answer.model == "my-embedder"  # echoed, as on chat routes
    vectors = [d.embedding for d in answer.data]
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert _cosine(vectors[0], vectors[1]) > _cosine(vectors[0], vectors[2]) + 0.3
    assert answer.usage.prompt_tokens == answer.usage.total_tokens > 15
    with pytest.raises(openai.BadRequestError, match="tokens"):
        sdk.embeddings.create(model="m", input="word " * 600)
    with pytest.raises(
        openai.BadRequestError, match="all-minilm-l6-v2 is not a chat model; call /embeddings"
    ):
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="whisper-tiny-en, a transcription model"):
        served.sdk("whisper-tiny-en").embeddings.create(model="m", input="hello")


def test_public_embeddings_and_rerank_with_the_management_key(served: Served) -> None:
    answer = served.http.post(
        "/api/v1/public/embeddings/generate",
        json={"input": "The quick brown fox", "model": "all-minilm-l6-v2"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["data"][0]["embedding"]) == 384
    assert body["model"] == "all-minilm-l6-v2"
    assert body["usage"]["prompt_tokens"] == 6  # [CLS] the quick brown fox [SEP]

    documents = [
        "Quantum computers use qubits to process information.",
        "Classical computers use binary bits.",
        "Bake the bread for forty minutes.",
    ]
    ranked = served.http.post(
        "/api/v1/public/rerank",
        json={"query": "What is quantum computing?", "documents": documents, "top_n": 2},
    ).json()
    assert [r["index"] for r in ranked["results"]] == [0, 1]
    assert [r["document"] for r in ranked["results"]] == documents[:2]
    scores = [r["relevance_score"] for r in ranked["results"]]
    assert scores == sorted(scores, reverse=True)

    for bad in ({"query": "q", "documents": []}, {"query": "q", "documents": ["a"], "top_n": 0}):
        refused = served.http.post("/api/v1/public/rerank", json=bad)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "INVALID_REQUEST"
    missing = served.http.post("/api/v1/public/embeddings/generate", json={"input": "x", "model": "bge-m3"})
    assert missing.status_code == 409
    assert "provision" in missing.json()["error"]["message"]
    not_embedding = served.http.post(
        "/api/v1/public/embeddings/generate", json={"input": "x", "model": "smollm2-135m"}
    )
    assert not_embedding.status_code == 400


def test_speech_round_trip_through_the_public_routes_and_the_sdk(served: Served) -> None:
    spoken = served.http.post(
        "/api/v1/public/audio/tts", json={"input": SENTENCE, "model": "espeak-ng", "voice": "en_female_1"}
    )
    assert spoken.status_code == 200, spoken.text
    assert spoken.headers["content-type"] == "audio/mpeg"
    mp3 = spoken.content
    heard = served.http.post(
        "/api/v1/public/audio/transcriptions",
        files={"file": ("fox.mp3", mp3, "audio/mpeg")},
        data={"model": "whisper-tiny-en"},
    )
    assert heard.status_code == 200, heard.text
    said = _words(SENTENCE)
    assert len(_words(heard.json()["text"]) & said) >= len(said) - 2, heard.json()
    assert heard.json()["duration"] > 1.0

    text = served.sdk("whisper-tiny-en").audio.transcriptions.create(model="whisper-1", file=("fox.mp3", mp3))
    assert len(_words(text.text) & said) >= len(said) - 2, text.text

    with pytest.raises(openai.BadRequestError, match="not audio"):
        served.sdk("whisper-tiny-en").audio.transcriptions.create(model="m", file=("a.mp3", b"plain text"))
    empty = served.http.post(
        "/api/v1/public/audio/transcriptions", files={"file": ("a.wav", b"", "audio/wav")}, data={}
    )
    assert empty.status_code == 400, empty.text
    voice = served.http.post("/api/v1/public/audio/tts", json={"input": "hi", "voice": "nobody"})
    assert voice.status_code == 400
    assert "voice" in voice.json()["error"]["message"]


def _views(served: Served) -> SqliteViews:
    return SqliteViews(Path(served.yard.env["MODELYARD_DATA_DIR"]) / "views.sqlite3")


def _eventually(read: Any, done: Any) -> Any:
    deadline = time.monotonic() + 15
    while True:
        found = read()
        if done(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_calls_are_metered_as_tokens_and_seconds_of_audio(served: Served) -> None:
    views = _views(served)
    embedder = ids.parse_deployment_id(str(served.instances["all-minilm-l6-v2"]["id"]))

    def tokens() -> int:
        with views.transaction() as tx:
            return usage_of_deployment(tx, embedder, "").prompt_tokens

    before = tokens()
    served.sdk("all-minilm-l6-v2").embeddings.create(model="m", input="one two three")  # 5 tokens
    assert _eventually(tokens, lambda n: n >= before + 5) == before + 5

    def audio() -> dict[str, float]:
        with views.transaction() as tx:
            return {a.model: a.audio_seconds for a in audio_by_model(tx, served.yard.account, "")}

    earlier = audio()
    spoken = served.http.post(
        "/api/v1/public/audio/tts", json={"input": "Metered speech.", "model": "espeak-ng"}
    )
    assert spoken.status_code == 200, spoken.text
    length = float(spoken.headers["x-audio-seconds"])
    served.http.post("/api/v1/public/audio/transcriptions", files={"file": ("m.mp3", spoken.content)})
    seconds = _eventually(
        audio,
        lambda found: all(found.get(m, 0) > earlier.get(m, 0) for m in ("espeak-ng", "whisper-tiny-en")),
    )
    assert seconds["espeak-ng"] - earlier.get("espeak-ng", 0) == pytest.approx(length, abs=0.001)
    # Whisper reads the decoded mp3, a few frames longer than the PCM it was made from.
    assert seconds["whisper-tiny-en"] - earlier.get("whisper-tiny-en", 0) == pytest.approx(length, abs=0.2)
    views.close()
