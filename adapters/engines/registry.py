"""The engines this product runs, by name: ``llamacpp``, ``simulated``, ``upstream`` and ``vllm``.

Each is a small stateless object meeting ``base.Engine``. ``llamacpp`` and ``simulated``
run our own replica server (``python -m modelyard.adapters.engines.replica``); ``vllm``
runs ``vllm serve``; ``upstream`` runs nothing and points at a server elsewhere.
"""

from __future__ import annotations

import sys

from modelyard.adapters.engines.base import LOOPBACK, Engine, Launch, PlacementError, ReplicaSpec
from modelyard.adapters.engines.lifeline import LIFELINE_MODULE, TOKEN_VARIABLE
from modelyard.adapters.engines.presets import llamacpp_arguments
from modelyard.adapters.engines.vllm_args import vllm_command

REPLICA_MODULE = "modelyard.adapters.engines.replica"
# vLLM checks this key on its /v1 routes (its /health stays open).
VLLM_TOKEN_VARIABLE = "VLLM_API_KEY"  # noqa: S105 - a variable's name, not its value


def _replica_command(spec: ReplicaSpec, backend: str, launch: Launch | None) -> list[str]:
    command = [
        sys.executable, "-m", REPLICA_MODULE, "--backend", backend, "--model", spec.model,
        "--port", str(spec.port), "--context-window", str(spec.context_window),
    ]  # fmt: skip
    if launch is not None:
        command += ["--parent-pid", str(launch.parent_pid), "--log-file", launch.log_file]
    return command


def _loopback(spec: ReplicaSpec) -> str:
    if spec.port <= 0:
        raise ValueError(f"replica of {spec.model} has no port yet; placement binds one first")
    return f"http://{LOOPBACK}:{spec.port}"


class LlamaCppEngine:
    """A GGUF model on the CPU: our replica server around llama-cpp-python."""

    name = "llamacpp"
    needs_gpu = False
    # Loading a small GGUF takes a second or two; a cold disk or a busy host much longer.
    start_timeout_s = 120.0
    health_path = "/health"

    def command(self, spec: ReplicaSpec, launch: Launch | None = None) -> list[str]:
        """The replica server with the llama.cpp backend on ``spec.path``."""
        if not spec.path:
            raise PlacementError(f"{spec.model}: a llama.cpp replica needs a GGUF file and none is mapped.")
        own = _replica_command(spec, "llamacpp", launch)
        return [*own, "--path", spec.path, *llamacpp_arguments(spec)]

    def environment(self, token: str) -> dict[str, str]:
        """Our replica server reads its token from the environment."""
        return {TOKEN_VARIABLE: token}

    def base_url(self, spec: ReplicaSpec) -> str:
        """The replica's loopback address."""
        return _loopback(spec)


class SimulatedEngine:
    """The deterministic engine for tests and load: configurable TTFT and token rate."""

    name = "simulated"
    needs_gpu = False
    start_timeout_s = 30.0
    health_path = "/health"

    def command(self, spec: ReplicaSpec, launch: Launch | None = None) -> list[str]:
        """The replica server with the simulated backend."""
        timing = ["--ttft-ms", str(spec.ttft_ms), "--tokens-per-s", str(spec.tokens_per_s)]
        return [*_replica_command(spec, "simulated", launch), *timing]

    def environment(self, token: str) -> dict[str, str]:
        """Our replica server reads its token from the environment."""
        return {TOKEN_VARIABLE: token}

    def base_url(self, spec: ReplicaSpec) -> str:
        """The replica's loopback address."""
        return _loopback(spec)


class UpstreamEngine:
    """Any OpenAI-compatible server elsewhere (a hosted API, vLLM on another host); no process."""

    name = "upstream"
    needs_gpu = False
    start_timeout_s = 10.0
    health_path = "/v1/models"

    def command(self, spec: ReplicaSpec, launch: Launch | None = None) -> None:
        """Nothing runs here: the upstream server is already up."""

    def environment(self, token: str) -> dict[str, str]:
        """Nothing is started, so nothing is handed a token; the upstream has its own key."""
        return {}

    def base_url(self, spec: ReplicaSpec) -> str:
        """The upstream's base URL without a trailing ``/v1`` (the gateway appends the route)."""
        if not spec.upstream_url:
            raise PlacementError(f"{spec.model}: an upstream replica needs a base URL.")
        url = spec.upstream_url.rstrip("/")
        return url.removesuffix("/v1")


class VllmEngine:
    """``vllm serve`` on a GPU with the preset's arguments (the int8 ``cost`` preset included)."""

    name = "vllm"
    needs_gpu = True
    # Weights download and CUDA graph capture take minutes for an 8B model.
    start_timeout_s = 900.0
    health_path = "/health"

    def command(self, spec: ReplicaSpec, launch: Launch | None = None) -> list[str]:
        """The ``vllm serve`` argv on the spec's loopback port, behind our lifeline when launched:
        vLLM has no parent-pid option, and the lifeline's parent-death signal outlives its exec."""
        served = vllm_command(
            spec.model, port=spec.port, preset=spec.preset, context_window=spec.context_window
        )
        if launch is None:
            return served
        return [sys.executable, "-m", LIFELINE_MODULE, "--parent-pid", str(launch.parent_pid), "--", *served]

    def environment(self, token: str) -> dict[str, str]:
        """vLLM's own API key variable: it then refuses /v1 calls without the token."""
        return {VLLM_TOKEN_VARIABLE: token}

    def base_url(self, spec: ReplicaSpec) -> str:
        """The replica's loopback address."""
        return _loopback(spec)


class MediaEngine:
    """A model that is not chat, on the CPU in our replica server: embeddings
    (sentence-transformers), transcription (faster-whisper) or speech (espeak-ng)."""

    needs_gpu = False
    # Loading a small model takes seconds; a cold disk or a busy host longer.
    start_timeout_s = 120.0
    health_path = "/health"

    def __init__(self, name: str, backend: str) -> None:
        self.name, self._backend = name, backend

    def command(self, spec: ReplicaSpec, launch: Launch | None = None) -> list[str]:
        """The replica server with this engine's backend on the spec's model folder."""
        own = _replica_command(spec, self._backend, launch)
        return [*own, *(["--path", spec.path] if spec.path else []), "--threads", str(spec.threads)]

    def environment(self, token: str) -> dict[str, str]:
        """The token, and Hugging Face's libraries told never to reach the network: the
        model is on disk, and a replica must not stall on a download it never needs."""
        return {TOKEN_VARIABLE: token, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

    def base_url(self, spec: ReplicaSpec) -> str:
        """The replica's loopback address."""
        return _loopback(spec)


MEDIA_ENGINES = (
    MediaEngine("sentence-transformers", "embedding"),
    MediaEngine("faster-whisper", "transcription"),
    MediaEngine("espeak-ng", "speech"),
)
ENGINES: dict[str, Engine] = {
    engine.name: engine
    for engine in (LlamaCppEngine(), SimulatedEngine(), UpstreamEngine(), VllmEngine(), *MEDIA_ENGINES)
}


def engine_for(name: str) -> Engine:
    """The engine called ``name``; an unknown name is a placement error, not a crash."""
    try:
        return ENGINES[name]
    except KeyError:
        raise PlacementError(
            f"no engine called {name!r}; this build has {', '.join(sorted(ENGINES))}"
        ) from None
