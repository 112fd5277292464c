"""The ``vllm serve`` command line of a GPU replica, per preset (FEATURES A8, G1)."""

from __future__ import annotations

import json
import sys

# Catalog id -> the checkpoint vLLM loads.
CHECKPOINTS = {
    "llama3.1-8b": "meta-llama/Llama-3.1-8B-Instruct",
    "llama-3.3-8b-instruct": "meta-llama/Llama-3.1-8B-Instruct",
    "llama-3.3-70b-instruct": "meta-llama/Llama-3.3-70B-Instruct",
    "qwen2.5-14b-instruct": "Qwen/Qwen2.5-14B-Instruct",
    "gemma-2-27b-it": "google/gemma-2-27b-it",
    "deepseek-coder-v2-lite": "deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct",
    "bge-m3": "BAAI/bge-m3",
}
# Models vLLM serves as embedding models (its /v1/embeddings), not as chat.
EMBEDDING_MODELS = frozenset({"bge-m3"})
# The name our int8 quantization plugin registers with vLLM (kernels/).
INT8_QUANTIZATION = "modelyard_int8"

PRESET_ARGS: dict[str, list[str]] = {
    # fp16/bf16 weights, the largest batch: throughput first.
    "speed": ["--dtype", "bfloat16", "--max-num-seqs", "256"],
    # speculative decoding (n-gram prompt lookup needs no draft model), small batch.
    "latency": [
        "--dtype", "bfloat16", "--max-num-seqs", "8",
        "--speculative-config",
        json.dumps({"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4}),
    ],
    # int8 weights through the project's Triton kernels.
    "cost": ["--dtype", "bfloat16", "--quantization", INT8_QUANTIZATION, "--max-num-seqs", "64"],
    # bf16, vLLM picks the batch size.
    "balanced": ["--dtype", "bfloat16"],
}  # fmt: skip


def vllm_command(
    model: str, *, port: int, preset: str = "balanced", context_window: int | None = None
) -> list[str]:
    """``vllm serve`` for ``model`` on loopback ``port`` with the preset's arguments.

    ``context_window`` (the catalog's) caps the model's length, so what the catalog says
    is what the engine serves.
    """
    checkpoint = CHECKPOINTS.get(model, model)
    window = ["--max-model-len", str(context_window)] if context_window else []
    return [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", checkpoint,
        "--served-model-name", model, "--host", "127.0.0.1", "--port", str(port),
        *PRESET_ARGS[preset], *window,
        *(["--runner", "pooling"] if model in EMBEDDING_MODELS else []),
    ]  # fmt: skip
