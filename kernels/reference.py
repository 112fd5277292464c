"""Plain-PyTorch references of every kernel: the truth the Triton kernels are tested against."""

from __future__ import annotations

import torch

QMAX = 127


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row: ``x ≈ q * scale[:, None]``; an all-zero row gets scale 1."""
    absmax = x.float().abs().amax(dim=1)
    scale = torch.where(absmax > 0, absmax / QMAX, torch.ones_like(absmax))
    q = torch.round(x.float() / scale[:, None]).clamp(-QMAX, QMAX).to(torch.int8)
    return q, scale


def w8a16(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x[M, K] @ (q[N, K] * scale[N])^T + bias`` in fp32, returned in ``x``'s dtype."""
    out = x.float() @ (q.float() * scale[:, None].float()).T
    if bias is not None:
        out += bias.float()
    return out.to(x.dtype)


def w8a8(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Per-token int8 activations times int8 weights, int32 accumulation, scaled epilogue."""
    xq, xs = quantize_rows(x)
    acc = xq.to(torch.int32) @ q.to(torch.int32).T
    out = acc.float() * xs[:, None] * scale[None, :].float()
    if bias is not None:
        out += bias.float()
    return out.to(x.dtype)
