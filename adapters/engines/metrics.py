"""Replica metrics in Prometheus text with vLLM's names, and the parser that reads any engine's."""

from __future__ import annotations

import threading
from typing import Any

from modelyard.adapters.engines.base import EngineStats, parse_metrics

__all__ = ["BUCKETS", "EngineStats", "ReplicaMetrics", "parse_metrics"]

# TTFT histogram bucket bounds in seconds (vLLM's own are similar).
BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


class ReplicaMetrics:
    """Counters one replica keeps about itself."""

    def __init__(self, *, model: str) -> None:
        self.model = model
        self.running = 0
        self.waiting = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.requests = 0
        self.cancelled = 0
        # Written from generation threads, read by /metrics on the event loop.
        self._engine_lock = threading.Lock()
        self.engine_active = 0
        self.engine_chunks = 0
        self._ttft_buckets = [0] * len(BUCKETS)
        self._ttft_sum = 0.0
        self._ttft_count = 0

    def started(self, ttft_s: float) -> None:
        """A request produced its first token after ``ttft_s`` seconds."""
        self.waiting -= 1
        self.running += 1
        self._ttft_sum += ttft_s
        self._ttft_count += 1
        for i, bound in enumerate(BUCKETS):
            if ttft_s <= bound:
                self._ttft_buckets[i] += 1

    def engine_began(self) -> None:
        """A generation thread started working on a request."""
        with self._engine_lock:
            self.engine_active += 1

    def engine_chunk(self) -> None:
        """A generation thread produced one chunk (a token, mostly)."""
        with self._engine_lock:
            self.engine_chunks += 1

    def engine_ended(self) -> None:
        """A generation thread returned, finished or cancelled; the engine is free of it."""
        with self._engine_lock:
            self.engine_active -= 1

    def finished(self, usage: dict[str, Any]) -> None:
        """A request completed with ``usage``."""
        self.requests += 1
        self.prompt_tokens += int(usage.get("prompt_tokens", 0))
        self.generation_tokens += int(usage.get("completion_tokens", 0))

    def render(self) -> str:
        """The Prometheus exposition text."""
        label = f'{{model_name="{self.model}"}}'
        series = [
            ("vllm:num_requests_running", "gauge", self.running),
            ("vllm:num_requests_waiting", "gauge", self.waiting),
            ("vllm:prompt_tokens_total", "counter", self.prompt_tokens),
            ("vllm:generation_tokens_total", "counter", self.generation_tokens),
            ("modelyard:requests_cancelled_total", "counter", self.cancelled),
            ("modelyard:engine_generations_active", "gauge", self.engine_active),
            ("modelyard:engine_chunks_total", "counter", self.engine_chunks),
        ]
        lines = []
        for name, kind, value in series:
            lines += [f"# TYPE {name} {kind}", f"{name}{label} {value}"]
        lines.append("# TYPE vllm:time_to_first_token_seconds histogram")
        bucket = "vllm:time_to_first_token_seconds_bucket"
        for bound, count in zip(BUCKETS, self._ttft_buckets, strict=True):
            lines.append(f'{bucket}{{model_name="{self.model}",le="{bound}"}} {count}')
        lines.append(f'{bucket}{{model_name="{self.model}",le="+Inf"}} {self._ttft_count}')
        lines.append(f"vllm:time_to_first_token_seconds_sum{label} {self._ttft_sum}")
        lines.append(f"vllm:time_to_first_token_seconds_count{label} {self._ttft_count}")
        return "\n".join(lines) + "\n"
