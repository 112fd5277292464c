"""What this cluster's placement can start, as the domain's fit check reads it.

The engine registry decides here what a replica on this host could be: the simulated
engine serves anything; llama.cpp serves the models with a GGUF mapped; vLLM serves the
rest on the GPU types the cluster has. The composition root builds the ``HostCapacity``
once and hands it to the deployments service.
"""

from __future__ import annotations

from modelyard.adapters.engines.models import gguf_paths, has_gpu
from modelyard.domain.catalog.fit import HostCapacity
from modelyard.domain.catalog.hardware import REGIONS
from modelyard.domain.shared.errors import InvalidRequest

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
            cpu_models=frozenset(gguf_paths(gguf_models)),
            gpu_types=gpus,
            regions=served,
        )
    except InvalidRequest as exc:
        raise ValueError(exc.message) from None
