"""What this cluster can serve: a deployment that no placement here could run is refused at once.

The composition root describes the cluster (``HostCapacity``: the engine registry's view of
what it can start here) and hands it to the deployments service; ``check_fit`` decides,
purely, whether a requested deployment can be placed. A request that cannot is refused
before anything is recorded, with the reason, instead of being accepted and failing later.

Unknown names (GPU type, region, preset) and a model larger than the named GPU type's
memory are bad requests (``hardware``); a well-formed request this cluster has no capacity
for (no GPU for a GPU model, no GPU of the named type, no capacity in the region) is
PROVISIONING_FAILED, the first document's code for a placement that cannot be made.
"""

from __future__ import annotations

import msgspec

from modelyard.domain.catalog.hardware import GPU_TYPES, REGIONS, Preset, check_gpu_fit, check_region
from modelyard.domain.catalog.models import ModelSpec
from modelyard.domain.shared.errors import InvalidRequest, ProvisioningFailed


class HostCapacity(msgspec.Struct, frozen=True, kw_only=True):
    """What the cluster's placement can start: given by the composition root, never looked up here.

    ``simulated``: every replica runs the simulated engine, which serves any catalog model
    on any GPU type and region (control-plane and load tests). ``cpu_models``: the models a
    CPU replica serves (a GGUF is mapped for them). ``gpu_types``: the catalog GPU types the
    cluster has (none on a CPU-only host). ``regions``: where it has capacity.
    ``typed_nodes``: the placement lands a replica only on a node of the named GPU type (a
    Ray cluster's custom resources), so even a simulated replica needs that type here.
    ``free_gpu_types``: the GPU types with a GPU free right now (None: not known, all are).
    """

    simulated: bool = False
    cpu_models: frozenset[str] = frozenset()
    gpu_types: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset(REGIONS)
    typed_nodes: bool = False
    free_gpu_types: frozenset[str] | None = None

    def __post_init__(self) -> None:
        unknown = (self.gpu_types - GPU_TYPES.keys()) | (self.regions - set(REGIONS))
        if unknown:
            raise InvalidRequest(f"Not in the catalog: {_listed(frozenset(unknown))}.")


def _listed(names: frozenset[str]) -> str:
    return ", ".join(sorted(names)) or "none"


def check_fit(
    model: ModelSpec, host: HostCapacity, *, gpu_type: str | None, region: str | None, preset: Preset
) -> None:
    """Refuse a deployment of ``model`` that no placement on ``host`` can serve.

    Unknown ``gpu_type``/``region`` and a model too large for ``gpu_type`` are INVALID_REQUEST;
    no capacity for it here is PROVISIONING_FAILED. Each message says why and what would fit.
    """
    if gpu_type is not None:
        check_gpu_fit(model, gpu_type, preset)
    if region is not None:
        check_region(region)
        if region not in host.regions:
            raise ProvisioningFailed(
                f"No capacity in region {region}: this cluster serves {_listed(host.regions)}."
            )
    if host.simulated and not (host.typed_nodes and gpu_type is not None):
        return
    if gpu_type is None:
        _check_any_placement(model, host, preset)
    elif gpu_type not in host.gpu_types:
        cpu = f" Omit gpu_type to serve {model.id} on the CPU." if model.id in host.cpu_models else ""
        raise ProvisioningFailed(
            f"No {gpu_type} GPU on this cluster (it has: {_listed(host.gpu_types)}).{cpu}"
        )
    elif not host.simulated and host.free_gpu_types is not None and gpu_type not in host.free_gpu_types:
        raise ProvisioningFailed(
            f"Every {gpu_type} GPU on this cluster is in use; free now: {_listed(host.free_gpu_types)}."
        )


def _check_any_placement(model: ModelSpec, host: HostCapacity, preset: Preset) -> None:
    """With no GPU type named: a CPU replica if the model has one, else the largest GPU here."""
    if model.id in host.cpu_models:
        return
    if not host.gpu_types:
        raise ProvisioningFailed(
            f"{model.id} needs a GPU (vLLM) and this cluster has none; its CPU hosts serve "
            f"{_listed(host.cpu_models)}."
        )
    largest = max((GPU_TYPES[g] for g in host.gpu_types), key=lambda g: g.vram_gib)
    try:
        check_gpu_fit(model, largest.id, preset)
    except InvalidRequest as exc:  # too large for the largest GPU here: no capacity for it
        raise ProvisioningFailed(f"No GPU on this cluster is large enough: {exc.message}") from None
