"""Replica metrics with vLLM's names, kept and exposed by ``prometheus_client``.

Each replica has its own ``CollectorRegistry`` (so two replicas in one test process do not
share counters) holding vLLM's series — requests running and waiting, prompt and generated
tokens, the time-to-first-token and queue-time histograms — and modelyard's own about
cancellations, refusals of a full queue and the engine's generation threads.
``parse_metrics`` (in ``base``) reads them back, and vLLM's.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from modelyard.adapters.engines.base import EngineStats, parse_metrics

__all__ = ["BUCKETS", "MEDIA_TYPE", "EngineStats", "ReplicaMetrics", "parse_metrics"]

# TTFT histogram bucket bounds in seconds (vLLM's own are similar).
BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# Decode-time histogram bucket bounds in seconds (vLLM's own are similar).
DECODE_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0)
# What generate_latest writes: the Prometheus text format 0.0.4, which vLLM serves too.
MEDIA_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ReplicaMetrics:
    """What one replica counts about itself; safe to update from generation threads."""

    def __init__(self, *, model: str) -> None:
        self.model = model
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["model_name"]

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, labels, registry=self.registry)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, labels, registry=self.registry)

        self._running = gauge("vllm:num_requests_running", "Requests generating now.").labels(model)
        self._waiting = gauge("vllm:num_requests_waiting", "Requests before their first token.").labels(model)
        self._prompt = counter("vllm:prompt_tokens", "Prompt tokens of completed requests.").labels(model)
        self._generated = counter(
            "vllm:generation_tokens", "Tokens generated for completed requests."
        ).labels(model)
        self._cancelled = counter(
            "modelyard:requests_cancelled", "Requests whose client left before the end."
        ).labels(model)
        self._engine_active = gauge(
            "modelyard:engine_generations_active", "Generation threads working on a request."
        ).labels(model)
        self._engine_chunks = counter("modelyard:engine_chunks", "Chunks (tokens, mostly) generated.").labels(
            model
        )
        self._decode = Histogram(
            "vllm:request_decode_time_seconds",
            "Time from a completed request's first token to its last.",
            labels,
            buckets=DECODE_BUCKETS,
            registry=self.registry,
        ).labels(model)
        self._refused = counter(
            "modelyard:requests_refused_busy",
            "Requests answered 503: a full queue or too long a wait.",
        ).labels(model)
        self._queue_time = Histogram(
            "vllm:request_queue_time_seconds",
            "Time a request waited for the engine before it was admitted.",
            labels,
            buckets=BUCKETS,
            registry=self.registry,
        ).labels(model)
        self._ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Time to first token.",
            labels,
            buckets=BUCKETS,
            registry=self.registry,
        ).labels(model)

    def queued(self) -> None:
        """A request arrived and waits for its first token."""
        self._waiting.inc()

    def admitted(self, waited_s: float) -> None:
        """A waiting request got the engine after ``waited_s`` seconds in the queue."""
        self._queue_time.observe(waited_s)

    def refused(self) -> None:
        """A waiting request was turned away (503): the queue was full or it waited too long."""
        self._waiting.dec()
        self._refused.inc()

    def started(self, ttft_s: float) -> None:
        """A waiting request produced its first token after ``ttft_s`` seconds."""
        self._waiting.dec()
        self._running.inc()
        self._ttft.observe(ttft_s)

    def left(self, *, started: bool, completed: bool) -> None:
        """A request is done with the replica: after its first token or before, whole or cut off."""
        (self._running if started else self._waiting).dec()
        if not completed:
            self._cancelled.inc()

    def engine_began(self) -> None:
        """A generation thread started working on a request."""
        self._engine_active.inc()

    def engine_chunk(self) -> None:
        """A generation thread produced one chunk (a token, mostly)."""
        self._engine_chunks.inc()

    def engine_ended(self) -> None:
        """A generation thread returned, finished or cancelled; the engine is free of it."""
        self._engine_active.dec()

    def decoded(self, seconds: float) -> None:
        """A completed request spent ``seconds`` from its first token to its last."""
        self._decode.observe(seconds)

    def finished(self, usage: dict[str, Any]) -> None:
        """A request completed with ``usage``."""
        self._prompt.inc(int(usage.get("prompt_tokens", 0)))
        self._generated.inc(int(usage.get("completion_tokens", 0)))

    def render(self) -> str:
        """The Prometheus exposition text."""
        return generate_latest(self.registry).decode()
