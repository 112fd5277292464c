"""GPU types, regions and presets of the second document, and what fits where."""

from __future__ import annotations

from enum import StrEnum

import msgspec

from modelyard.domain.catalog.models import ModelSpec
from modelyard.domain.shared.errors import InvalidRequest


class GpuType(msgspec.Struct, frozen=True, kw_only=True):
    """One GPU offering."""

    id: str
    hardware: str
    vram_gib: int


GPU_TYPES: dict[str, GpuType] = {
    g.id: g
    for g in (
        GpuType(id="h100", hardware="NVIDIA H100", vram_gib=80),
        GpuType(id="mi300x", hardware="AMD MI300X", vram_gib=192),
        GpuType(id="mi300x_8", hardware="8x AMD MI300X", vram_gib=1536),
        GpuType(id="mi325x", hardware="AMD MI325X", vram_gib=256),
        GpuType(id="mi325x_8", hardware="8x AMD MI325X", vram_gib=2048),
    )
}
REGIONS = ("atl1", "nyc2", "tor1", "ric1")


class Preset(StrEnum):
    """Inference presets (FEATURES A8)."""

    SPEED = "speed"
    LATENCY = "latency"
    COST = "cost"
    BALANCED = "balanced"


# Headroom for the KV cache and activations beyond the weights themselves.
_HEADROOM = 1.2
# int8 weights take half the bytes of fp16 ones.
_INT8_FACTOR = 0.5


def check_gpu_fit(model: ModelSpec, gpu_type: str, preset: Preset) -> GpuType:
    """The GPU type if ``model`` fits its memory under ``preset``; otherwise a clear 400."""
    gpu = GPU_TYPES.get(gpu_type)
    if gpu is None:
        raise InvalidRequest(f"Unknown gpu_type {gpu_type!r}; one of {', '.join(GPU_TYPES)}.")
    needed = model.weights_gib * (_INT8_FACTOR if preset is Preset.COST else 1.0) * _HEADROOM
    if needed > gpu.vram_gib:
        raise InvalidRequest(
            f"{model.id} needs about {needed:.0f} GiB with preset {preset.value}; "
            f"{gpu.id} has {gpu.vram_gib} GiB. Choose a larger gpu_type or the cost preset."
        )
    return gpu


def check_region(region: str) -> str:
    """The region if it exists."""
    if region not in REGIONS:
        raise InvalidRequest(f"Unknown region {region!r}; one of {', '.join(REGIONS)}.")
    return region


def parse_preset(text: str) -> Preset:
    """A preset by name."""
    try:
        return Preset(text)
    except ValueError:
        raise InvalidRequest(f"Unknown preset {text!r}; one of {', '.join(Preset)}.") from None
