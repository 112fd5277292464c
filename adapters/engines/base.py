"""The engine interface: what every engine (llama.cpp, simulated, upstream, vLLM) gives placement.

An engine turns a ``ReplicaSpec`` into the command line of a replica process (or none, for
an upstream server that already runs elsewhere) and the base URL where that replica speaks
the OpenAI HTTP API. Placement starts the process and keeps a ``ReplicaHandle``; the
gateway and the balancer read the handle; the control plane reads any engine's
``/metrics`` through ``parse_metrics``, because every engine exposes vLLM's metric names.
"""

from __future__ import annotations

from typing import Protocol

import msgspec
from prometheus_client.parser import text_string_to_metric_families

LOOPBACK = "127.0.0.1"


class PlacementError(RuntimeError):
    """This host cannot serve the model (no GPU for a GPU model, no file for a GGUF one)."""


class CapacityUnavailable(PlacementError):
    """No node has room for the replica now; asking again later may place it."""


class ReplicaSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What one replica serves and how; the same spec starts every replica of a deployment.

    ``path`` is the GGUF file of a llama.cpp replica, ``upstream_url`` (and
    ``upstream_key``) the server an upstream replica stands for. ``port`` 0 lets placement
    pick a free loopback port. The simulated engine reads ``ttft_ms`` and ``tokens_per_s``.
    """

    model: str
    engine: str
    path: str | None = None
    upstream_url: str | None = None
    upstream_key: str | None = None
    preset: str = "balanced"
    port: int = 0
    context_window: int = 2048
    threads: int = 2
    # llama.cpp's preset arguments (``presets``): prompt batch, KV cache type, n-gram draft.
    batch: int = 512
    kv_cache: str = ""
    draft_tokens: int = 0
    ttft_ms: float = 0.0
    tokens_per_s: float = 0.0
    # The deployment's GPU type and region: a cluster placement (``ray``) places by them.
    gpu_type: str | None = None
    region: str | None = None

    def on_port(self, port: int) -> ReplicaSpec:
        """The same spec bound to ``port``."""
        return msgspec.structs.replace(self, port=port)


class Launch(msgspec.Struct, frozen=True, kw_only=True):
    """What one start of a replica process adds to its spec's command line.

    ``parent_pid`` is the process that starts it: the replica gives up when that process
    is gone (``lifeline``). ``log_file`` is where a replica of ours keeps its rotating log.
    """

    parent_pid: int
    log_file: str


class Engine(Protocol):
    """Knows how to run a replica of a spec; holds no state of its own."""

    name: str
    # Whether a replica needs a CUDA device on its host (placement refuses one without).
    needs_gpu: bool
    # How long a replica may take to answer its health check after it starts.
    start_timeout_s: float
    # What answers 200 when the replica can serve: /health on our replicas and vLLM;
    # hosted OpenAI-compatible APIs have none, so an upstream is checked on /v1/models.
    health_path: str

    def command(self, spec: ReplicaSpec, launch: Launch | None = None) -> list[str] | None:
        """The replica process's argv, or None when nothing needs to run here (upstream)."""
        ...

    def environment(self, token: str) -> dict[str, str]:
        """The variables that hand the replica its token (never its command line, which any
        user of the host can read)."""
        ...

    def base_url(self, spec: ReplicaSpec) -> str:
        """Where the replica answers ``/v1/chat/completions`` (no trailing ``/v1``)."""
        ...


# A handle is the one mutable record here: the balancer counts requests in flight on it and
# placement flips ``healthy``; both hold a lock around those writes.
class ReplicaHandle(msgspec.Struct, kw_only=True):
    """One placed replica: its name, deployment, address, process and live counters."""

    name: str
    base_url: str
    pid: int | None = None
    deployment: str = ""
    spec: ReplicaSpec | None = None
    in_flight: int = 0
    healthy: bool = True
    # The token the replica checks on every call (empty for an upstream, which has its own key).
    token: str = ""

    def __repr__(self) -> str:
        # Everything but the token: a handle in a log line or a test's failure must not show it.
        return f"ReplicaHandle(name={self.name!r}, base_url={self.base_url!r}, pid={self.pid!r})"

    @property
    def headers(self) -> dict[str, str]:
        """What a call to this replica carries to be recognised by it."""
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.spec is not None and self.spec.upstream_key:
            return {"Authorization": f"Bearer {self.spec.upstream_key}"}
        return {}


class EngineStats(msgspec.Struct, frozen=True, kw_only=True):
    """What the control plane reads from an engine's /metrics."""

    running: int
    waiting: int
    prompt_tokens: int
    generation_tokens: int
    ttft_count: int
    ttft_sum_s: float
    ttft_buckets: dict[float, int]
    # Seconds completed requests spent from first token to last, summed (vLLM's
    # ``request_decode_time_seconds``); with ``generation_tokens`` it gives a stream's tokens/s.
    decode_time_s: float = 0.0

    def ttft_percentile_s(self, q: float) -> float | None:
        """The TTFT percentile ``q`` (0-100) as the upper bound of its bucket, None before any."""
        if self.ttft_count == 0:
            return None
        rank = self.ttft_count * q / 100
        for bound in sorted(self.ttft_buckets):
            if self.ttft_buckets[bound] >= rank:
                return bound
        return None

    @property
    def ttft_mean_s(self) -> float | None:
        """The mean time to first token, None before any request."""
        return self.ttft_sum_s / self.ttft_count if self.ttft_count else None

    def throughput(self, earlier: EngineStats, seconds: float) -> float:
        """Generated tokens per second between an ``earlier`` reading and this one."""
        if seconds <= 0:
            raise ValueError("the interval between two readings must be positive")
        return (self.generation_tokens - earlier.generation_tokens) / seconds


_TTFT_BUCKET = "vllm:time_to_first_token_seconds_bucket"


def parse_metrics(text: str) -> EngineStats:
    """Read vLLM-named metrics from Prometheus text (vLLM's own or a modelyard replica's).

    ``prometheus_client``'s parser reads the text; series of the same name with different
    labels (several models, several engines) are summed, which is what the control plane
    wants for a replica.
    """
    values: dict[str, float] = {}
    buckets: dict[float, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == _TTFT_BUCKET:
                bound = sample.labels.get("le", "+Inf")
                if bound != "+Inf":
                    buckets[float(bound)] = buckets.get(float(bound), 0) + int(sample.value)
                continue
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return EngineStats(
        running=int(values.get("vllm:num_requests_running", 0)),
        waiting=int(values.get("vllm:num_requests_waiting", 0)),
        prompt_tokens=int(values.get("vllm:prompt_tokens_total", 0)),
        generation_tokens=int(values.get("vllm:generation_tokens_total", 0)),
        ttft_count=int(values.get("vllm:time_to_first_token_seconds_count", 0)),
        ttft_sum_s=values.get("vllm:time_to_first_token_seconds_sum", 0.0),
        ttft_buckets=buckets,
        decode_time_s=values.get("vllm:request_decode_time_seconds_sum", 0.0),
    )
