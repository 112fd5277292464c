"""``Int8Linear``: a drop-in for ``nn.Linear`` with int8 weights, and a swap for whole models."""

from __future__ import annotations

import torch
from torch import nn

from modelyard.kernels.ops import int8_linear, quantize_rows


class Int8Linear(nn.Module):
    """Symmetric per-output-channel int8 weights; the forward runs the kernel dispatcher."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        q, scale = quantize_rows(linear.weight.detach())
        self.register_buffer("qweight", q)
        self.register_buffer("scale", scale)
        self.bias = linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W^T + b`` with the int8 weights."""
        return int8_linear(x, self.qweight, self.scale, self.bias)  # type: ignore[arg-type]


def swap_linears(model: nn.Module, *, skip: tuple[str, ...] = ("lm_head",)) -> int:
    """Replace every ``nn.Linear`` in ``model`` (except names ending in ``skip``) in place."""
    swapped = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and not full.endswith(skip):
                setattr(module, child_name, Int8Linear(child))
                swapped += 1
    return swapped
