"""Engine benchmarks: a llama.cpp replica's TTFT and decode rate, a simulated replica's overhead,
and how the least-loaded balancer spreads concurrent requests. Prints figures; asserts nothing.

Run: ``python bench/engines_bench.py [--requests N]`` (no services needed).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai

from modelyard.adapters.engines.base import ReplicaHandle, ReplicaSpec, parse_metrics
from modelyard.adapters.engines.models import gguf_paths, replica_spec
from modelyard.adapters.placement.balancer import LeastLoadedBalancer
from modelyard.adapters.placement.local import LocalPlacement

PROMPT = [{"role": "user", "content": "Explain in three sentences why the sky is blue."}]


def _stream_once(client: openai.OpenAI, max_tokens: int) -> tuple[float, float, int]:
    """(TTFT s, total s, completion tokens) of one streamed request, seen by the client."""
    started = time.perf_counter()
    first, tokens = 0.0, 0
    stream = client.chat.completions.create(
        model="m", messages=PROMPT, max_tokens=max_tokens, temperature=0, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )  # fmt: skip
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and not first:
            first = time.perf_counter() - started
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return first, time.perf_counter() - started, tokens


def bench_llamacpp(placement: LocalPlacement, requests: int) -> None:
    """Start time, TTFT and decode tokens/s of smollm2-135m on this CPU."""
    spec = replica_spec("smollm2-135m", engine="auto", gguf=gguf_paths(""), preset="balanced")
    started = time.perf_counter()
    handle = placement.start(spec, "bench-llama", deployment="bench")
    print(f"llama.cpp replica start (process + model load + /health): {time.perf_counter() - started:.2f} s")
    client = openai.OpenAI(base_url=f"{handle.base_url}/v1", api_key="x", max_retries=0, timeout=300)
    runs = [_stream_once(client, 64) for _ in range(requests)]
    ttfts = sorted(r[0] for r in runs)
    rates = [r[2] / (r[1] - r[0]) for r in runs if r[1] > r[0] and r[2] > 1]
    print(f"llama.cpp TTFT over {requests} streamed requests: p50 {statistics.median(ttfts) * 1000:.0f} ms, "
          f"max {ttfts[-1] * 1000:.0f} ms")  # fmt: skip
    print(f"llama.cpp decode rate: median {statistics.median(rates):.1f} tokens/s (64-token answers)")
    stats = parse_metrics(httpx.get(f"{handle.base_url}/metrics").text)
    print(f"replica's own /metrics: {stats.ttft_count} requests, TTFT p50 bucket <= "
          f"{stats.ttft_percentile_s(50)} s, {stats.generation_tokens} tokens generated")  # fmt: skip
    placement.stop(handle)


def bench_simulated(placement: LocalPlacement, requests: int) -> None:
    """Requests per second through two zero-delay simulated replicas behind the balancer."""
    handles = placement.start_many("sim", ReplicaSpec(model="sim", engine="simulated"), 2)
    balancer = LeastLoadedBalancer(placement)
    counts: dict[str, int] = {h.name: 0 for h in handles}
    lock = threading.Lock()
    body = {"model": "sim", "messages": [{"role": "user", "content": "a b c d e f g h"}]}
    clients = {h.name: httpx.Client(base_url=h.base_url, timeout=30) for h in handles}

    def one(_: int) -> None:
        with balancer.lease("sim") as handle:
            clients[handle.name].post("/v1/chat/completions", json=body).raise_for_status()
            with lock:
                counts[handle.name] += 1

    total = requests * 20
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(total)))
    elapsed = time.perf_counter() - started
    print(f"simulated replicas x2, 8 concurrent clients: {total / elapsed:.0f} requests/s, "
          f"{elapsed / total * 1000:.1f} ms mean wall per request")  # fmt: skip
    print(f"least-loaded spread over {total} requests: {sorted(counts.values())}")
    _spread_under_load(placement, balancer)
    for client in clients.values():
        client.close()
    placement.stop_deployment("sim")


def _spread_under_load(placement: LocalPlacement, balancer: LeastLoadedBalancer) -> None:
    """Requests held open (long generations) steer the next ones to the less busy replica."""
    handles = placement.replicas("sim")
    held: list[ReplicaHandle] = [balancer.acquire("sim") for _ in range(3)]
    before = [h.in_flight for h in handles]
    picks = [balancer.acquire("sim").name for _ in range(3)]
    print(f"in flight with 3 held: {before}; the next 3 went to {picks} -> {[h.in_flight for h in handles]}")
    for handle in held:
        balancer.release(handle)
    for name in picks:
        balancer.release(next(h for h in handles if h.name == name))


def main() -> None:
    """Run every engine benchmark once and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as logs:
        placement = LocalPlacement(Path(logs), gpu=False)
        try:
            bench_llamacpp(placement, args.requests)
            bench_simulated(placement, args.requests)
        finally:
            placement.stop_all()


if __name__ == "__main__":
    main()
