"""What this cluster's placement can start, as the domain's fit check reads it.

The engine registry decides here what a replica on this host could be: the simulated
engine serves anything; llama.cpp serves the models with a GGUF mapped; vLLM serves the
rest on the GPU types the cluster has. The composition root builds the ``HostCapacity``
once and hands it to the deployments service.
"""

from __future__ import annotations

import msgspec

from modelyard.adapters.engines.models import (
    PlacementError,
    cpu_media_models,
    gguf_paths,
    has_gpu,
    replica_spec,
)
from modelyard.adapters.engines.presets import arguments_in_force
from modelyard.domain.catalog.fit import HostCapacity
from modelyard.domain.catalog.hardware import REGIONS
from modelyard.domain.shared.errors import DomainError, InvalidRequest

# The catalog's NVIDIA type: the one a visible CUDA device is counted as when the operator
# names none (vLLM here runs on CUDA; its memory is the smallest the catalog assumes).
DETECTED_GPU = "h100"


def _names(text: str) -> frozenset[str]:
    # "none" says so explicitly (a host whose GPU must not be used).
    return frozenset(part.strip() for part in text.split(",") if part.strip() not in ("", "none"))


def host_capacity(*, engine: str, gguf_models: str, gpu_types: str, regions: str) -> HostCapacity:
    """The cluster's capacity from its settings: ``gpu_types`` empty means what this host
    shows (``DETECTED_GPU`` if a GPU is visible, none otherwise), ``none`` no GPU at all;
    ``regions`` empty, all.

    A name not in the catalog raises ``ValueError`` with the reason.
    """
    gpus = _names(gpu_types) if gpu_types.strip() else frozenset({DETECTED_GPU} if has_gpu() else ())
    served = _names(regions) if regions.strip() else frozenset(REGIONS)
    try:
        return HostCapacity(
            simulated=engine == "simulated",
            cpu_models=frozenset(gguf_paths(gguf_models)) | cpu_media_models(),
            gpu_types=gpus,
            regions=served,
        )
    except InvalidRequest as exc:
        raise ValueError(exc.message) from None


def serving_engine(
    model: str, preset: str, *, engine: str, gguf: dict[str, str], ttft_ms: float, tokens_per_s: float
) -> tuple[str, list[str]] | None:
    """The engine a replica of ``model`` under ``preset`` runs here and the preset's arguments
    in force (as the reconciler starts it), or None if this host cannot serve it."""
    try:
        spec = replica_spec(model, engine=engine, gguf=gguf, preset=preset)
    except (PlacementError, DomainError):
        return None
    if spec.engine == "simulated":
        spec = msgspec.structs.replace(spec, ttft_ms=ttft_ms, tokens_per_s=tokens_per_s)
    return spec.engine, arguments_in_force(spec)
