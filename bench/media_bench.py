"""Benchmarks of the models that are not chat, on this CPU. Prints figures; asserts nothing.

- Embeddings/s of all-MiniLM-L6-v2 for 32-sentence batches through a replica (HTTP, the
  official openai SDK), against two baselines measured in the same run: the same model
  called in this process (what the replica's HTTP costs), and the same sentences sent one
  per request (what batching gains).
- Transcription real-time factor of Whisper tiny.en through a replica: seconds spent per
  second of audio (speech made by the espeak-ng replica), below 1 is faster than real time.

Run: ``python bench/media_bench.py [--batches N]`` (no services needed; espeak-ng installed).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import openai

from modelyard.adapters.engines.base import ReplicaHandle
from modelyard.adapters.engines.media_backends import EmbeddingBackend
from modelyard.adapters.engines.models import media_folder, replica_spec
from modelyard.adapters.placement.local import LocalPlacement
from modelyard.adapters.services.speech import ensure_espeak

WORDS = [
    "river",
    "stone",
    "market",
    "engine",
    "garden",
    "signal",
    "winter",
    "copper",
    "letter",
    "harbour",
    "violin",
    "planet",
]
PARAGRAPH = (
    "The committee met on Tuesday to review the budget for the coming year. After a long "
    "discussion, the members agreed to fund the new library and to repair the old bridge "
    "near the river. The mayor thanked everyone for their patience and promised a public "
    "meeting next month to explain the decision."
)


def _sentences(count: int, seed: int) -> list[str]:
    """Distinct short sentences (8 to 14 words), so no batch repeats another."""
    out = []
    for i in range(count):
        n = 8 + (i + seed) % 7
        out.append(" ".join(WORDS[(i * 7 + j * 5 + seed) % len(WORDS)] for j in range(n)) + f" {i + seed}.")
    return out


def _sdk(handle: ReplicaHandle) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{handle.base_url}/v1", api_key=handle.token, max_retries=0, timeout=600)


def bench_embeddings(placement: LocalPlacement, batches: int) -> None:
    """Embeddings/s for 32-sentence batches: replica, in-process, and one sentence per request."""
    spec = replica_spec("all-minilm-l6-v2", engine="auto", gguf={}, preset="balanced")
    handle = placement.start(spec, "bench-embed", deployment="bench")
    client = _sdk(handle)
    work = [_sentences(32, seed * 32) for seed in range(batches)]
    client.embeddings.create(model="m", input=work[0])  # warm up
    started = time.perf_counter()
    for batch in work:
        client.embeddings.create(model="m", input=batch, encoding_format="float")
    replica_rate = 32 * batches / (time.perf_counter() - started)

    singles = [s for batch in work[: max(1, batches // 4)] for s in batch]
    started = time.perf_counter()
    for sentence in singles:
        client.embeddings.create(model="m", input=sentence, encoding_format="float")
    single_rate = len(singles) / (time.perf_counter() - started)
    placement.stop(handle)

    folder = media_folder("all-minilm-l6-v2")
    assert folder is not None
    local = EmbeddingBackend(model="all-minilm-l6-v2", path=folder, threads=spec.threads)
    local.embed(work[0])
    started = time.perf_counter()
    for batch in work:
        local.embed(batch)
    local_rate = 32 * batches / (time.perf_counter() - started)

    print(f"embeddings, 32-sentence batches through the replica: {replica_rate:.0f} sentences/s")
    print(f"  baseline, same model in this process: {local_rate:.0f} sentences/s "
          f"(replica at {replica_rate / local_rate:.2f}x of it)")  # fmt: skip
    print(f"  baseline, one sentence per request: {single_rate:.0f} sentences/s "
          f"(batching gains {replica_rate / single_rate:.1f}x)")  # fmt: skip


def bench_transcription(placement: LocalPlacement, runs: int) -> None:
    """Real-time factor of Whisper tiny.en on speech made by espeak-ng."""
    ensure_espeak()
    speaker = placement.start(
        replica_spec("espeak-ng", engine="auto", gguf={}, preset="balanced"), "bench-tts", deployment="bench"
    )
    spoken = _sdk(speaker).audio.speech.create(model="espeak-ng", voice="alloy", input=PARAGRAPH)
    seconds = float(spoken.response.headers["x-audio-seconds"])
    mp3 = spoken.content
    placement.stop(speaker)
    whisper = placement.start(
        replica_spec("whisper-tiny-en", engine="auto", gguf={}, preset="balanced"),
        "bench-stt",
        deployment="bench",
    )
    client = _sdk(whisper)
    client.audio.transcriptions.create(model="m", file=("warm.mp3", mp3))
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        text = client.audio.transcriptions.create(model="m", file=("p.mp3", mp3)).text
        took.append(time.perf_counter() - started)
    placement.stop(whisper)
    rtf = statistics.median(took) / seconds
    median = statistics.median(took)
    print(f"transcription, Whisper tiny.en on {seconds:.1f} s of speech: median {median:.2f} s "
          f"over {runs} runs, real-time factor {rtf:.3f} ({1 / rtf:.0f}x faster than real time)")  # fmt: skip
    print(f"  heard: {text[:100]!r}")


def main() -> None:
    """Run both benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=20, help="32-sentence batches to embed")
    parser.add_argument("--runs", type=int, default=3, help="transcriptions to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        placement = LocalPlacement(Path(folder), gpu=False)
        try:
            bench_embeddings(placement, args.batches)
            bench_transcription(placement, args.runs)
        finally:
            placement.stop_all()


if __name__ == "__main__":
    main()
