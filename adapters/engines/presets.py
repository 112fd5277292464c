"""Presets (FEATURES A8) as concrete engine arguments: llama.cpp on the CPU, vLLM on a GPU.

``speed``: every core, the largest batch, a long context. ``latency``: speculative decoding
(prompt-lookup n-grams, as vLLM's ``latency`` preset: no draft model to load) and a small
batch. ``cost``: the int8 path each engine has (vLLM: our ``modelyard_int8`` kernels; llama.cpp:
an 8-bit KV cache, the weights being the GGUF's own quantization) on half the cores.
``balanced``: every core, llama.cpp's default batch, a 2k context. vLLM's table is ``vllm_args.PRESET_ARGS``.
"""

from __future__ import annotations

import os

import msgspec

from modelyard.adapters.engines.base import ReplicaSpec
from modelyard.adapters.engines.vllm_args import PRESET_ARGS

# llama.cpp's GGML type id of q8_0: an 8-bit quantized KV cache.
Q8_0 = "q8_0"


class LlamaCppPreset(msgspec.Struct, frozen=True, kw_only=True):
    """What a llama.cpp replica is started with under one preset."""

    threads: int
    batch: int
    context_window: int
    kv_cache: str = ""
    draft_tokens: int = 0


def _cores() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def llamacpp_preset(preset: str, model_context: int, cores: int | None = None) -> LlamaCppPreset:
    """The llama.cpp arguments of ``preset`` on a host with ``cores`` (this host's by default)."""
    n = cores or _cores()
    half = max(1, n // 2)
    table = {
        "speed": LlamaCppPreset(threads=n, batch=1024, context_window=8192),
        "latency": LlamaCppPreset(threads=n, batch=64, context_window=4096, draft_tokens=4),
        "cost": LlamaCppPreset(threads=half, batch=128, context_window=2048, kv_cache=Q8_0),
        "balanced": LlamaCppPreset(threads=n, batch=512, context_window=2048),
    }
    chosen = table.get(preset, table["balanced"])
    return msgspec.structs.replace(chosen, context_window=min(chosen.context_window, model_context))


def with_preset(spec: ReplicaSpec, model_context: int) -> ReplicaSpec:
    """A llama.cpp spec with its preset's threads, batch, context and cache applied."""
    chosen = llamacpp_preset(spec.preset, model_context)
    return msgspec.structs.replace(
        spec,
        threads=chosen.threads,
        batch=chosen.batch,
        context_window=chosen.context_window,
        kv_cache=chosen.kv_cache,
        draft_tokens=chosen.draft_tokens,
    )


def llamacpp_arguments(spec: ReplicaSpec) -> list[str]:
    """The preset's part of a llama.cpp replica's command line (the context window is every
    replica's own argument)."""
    args = ["--threads", str(spec.threads), "--batch", str(spec.batch)]
    if spec.kv_cache:
        args += ["--kv-cache", spec.kv_cache]
    if spec.draft_tokens:
        args += ["--draft-tokens", str(spec.draft_tokens)]
    return args


def arguments_in_force(spec: ReplicaSpec) -> list[str]:
    """What the deployment shows as its engine's arguments: the preset's, per engine."""
    if spec.engine == "llamacpp":
        return [*llamacpp_arguments(spec), "--context-window", str(spec.context_window)]
    if spec.engine == "vllm":
        return list(PRESET_ARGS[spec.preset])
    if spec.engine == "simulated":
        return ["--ttft-ms", f"{spec.ttft_ms:g}", "--tokens-per-s", f"{spec.tokens_per_s:g}"]
    return []
