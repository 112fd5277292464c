"""Real replica processes for the models that are not chat: all-MiniLM-L6-v2 embeddings (and
rerank), Whisper tiny.en transcription, espeak-ng speech; driven with the official openai SDK.

One replica of each for the whole module: each model loads once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from modelyard.adapters.engines.base import ReplicaHandle
from modelyard.adapters.engines.models import replica_spec
from modelyard.adapters.placement.local import LocalPlacement
from modelyard.adapters.services.speech import ensure_espeak

pytestmark = pytest.mark.integration

SENTENCE = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def placement(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlacement]:
    placed = LocalPlacement(Path(tmp_path_factory.mktemp("media")), gpu=False)
    yield placed
    placed.stop_all()


def _start(placement: LocalPlacement, model: str) -> ReplicaHandle:
    spec = replica_spec(model, engine="auto", gguf={}, preset="balanced")
    return placement.start(spec, f"{model}-1", deployment=f"dep_{model}")


@pytest.fixture(scope="module")
def embedder(placement: LocalPlacement) -> ReplicaHandle:
    return _start(placement, "all-minilm-l6-v2")


@pytest.fixture(scope="module")
def whisper(placement: LocalPlacement) -> ReplicaHandle:
    return _start(placement, "whisper-tiny-en")


@pytest.fixture(scope="module")
def speaker(placement: LocalPlacement) -> ReplicaHandle:
    ensure_espeak()
    return _start(placement, "espeak-ng")


def _sdk(replica: ReplicaHandle) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{replica.base_url}/v1", api_key=replica.token, max_retries=0, timeout=120)


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


def words(text: str) -> list[str]:
    """Lower-case words, punctuation dropped."""
    return re.findall(r"[a-z']+", text.lower())


def test_embeddings_through_the_sdk_are_384_unit_vectors_that_mean_something(embedder: ReplicaHandle) -> None:
    texts = ["A cat sits on the mat.", "A kitten rests on a rug.", "Stock markets fell sharply today."]
    answer = _sdk(embedder).embeddings.create(model="all-minilm-l6-v2", input=texts)  # SDK asks for base64
    vectors = [item.embedding for item in answer.data]
    assert [item.index for item in answer.data] == [0, 1, 2]
    assert all(len(v) == 384 for v in vectors)
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-3 for v in vectors)
    assert _cosine(vectors[0], vectors[1]) > _cosine(vectors[0], vectors[2]) + 0.3
    # Tokens by the model's own tokenizer: [CLS] a cat sits on the mat . [SEP] is 9.
    assert answer.usage.prompt_tokens > len(texts) * 5
    floats = _sdk(embedder).embeddings.create(model="m", input=texts[0], encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)


def test_an_input_over_the_model_limit_is_refused_not_cut(embedder: ReplicaHandle) -> None:
    with pytest.raises(openai.BadRequestError, match=r"input\[1\] has \d+ tokens"):
        _sdk(embedder).embeddings.create(model="m", input=["short", "word " * 400])


def test_rerank_orders_by_cosine_similarity(embedder: ReplicaHandle) -> None:
    documents = [
        "Classical computers use binary bits.",
        "Quantum computers use qubits to process information.",
        "The recipe needs two eggs and flour.",
    ]
    answer = httpx.post(
        f"{embedder.base_url}/v1/rerank",
        json={"query": "What is quantum computing?", "documents": documents, "top_n": 2},
        headers={"Authorization": f"Bearer {embedder.token}"},
        timeout=60,
    ).json()
    results = answer["results"]
    assert [r["index"] for r in results] == [1, 0]
    assert results[0]["document"] == documents[1]
    assert results[0]["relevance_score"] > results[1]["relevance_score"]


def test_speech_then_transcription_gives_back_the_words(
    speaker: ReplicaHandle, whisper: ReplicaHandle
) -> None:
    spoken = _sdk(speaker).audio.speech.create(model="espeak-ng", voice="alloy", input=SENTENCE)
    mp3 = spoken.content
    assert mp3[:3] == b"ID3" or mp3[0] == 0xFF  # an mp3 frame (or its tag) first
    assert 1.0 < float(spoken.response.headers["x-audio-seconds"]) < 10.0
    text = _sdk(whisper).audio.transcriptions.create(model="whisper-tiny-en", file=("fox.mp3", mp3))
    heard = set(words(text.text))
    said = set(words(SENTENCE))
    assert len(heard & said) >= len(said) - 2, text.text


def test_what_is_not_audio_is_a_400(whisper: ReplicaHandle) -> None:
    with pytest.raises(openai.BadRequestError, match="not audio"):
        _sdk(whisper).audio.transcriptions.create(
            model="m", file=("notes.mp3", b"this is plain text, not sound")
        )
