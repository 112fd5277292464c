"""Host functions: validate, pick block sizes, launch. Each has a reference in ``reference.py``.

Block sizes come from ``HOPPER_BLOCKS`` on a GPU (hand-tuned starting points for H100-class
parts, stored as data) and are passed explicitly in tests, where Triton's interpreter runs
the same kernels on the CPU (``TRITON_INTERPRET=1``; no bf16 arithmetic there).
"""

from __future__ import annotations

import os

import torch

from modelyard.kernels import reference

# (max M, block_m, block_n, block_k, split_k) for W8A16, smallest bucket first.
HOPPER_BLOCKS: tuple[tuple[int, int, int, int, int], ...] = (
    (16, 16, 64, 256, 4),
    (32, 32, 64, 128, 2),
    (64, 64, 64, 128, 1),
)
W8A8_BLOCKS = (128, 128, 64)
# Above this many rows int8 x int8 (W8A8) wins; at or below it, W8A16 reads weights once.
W8A16_MAX_M = 64


def _runs_triton(t: torch.Tensor) -> bool:
    return t.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


def _check(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> None:
    if x.dim() != 2 or q.dim() != 2 or x.shape[1] != q.shape[1]:
        raise ValueError(f"shapes do not chain: x {tuple(x.shape)}, weights {tuple(q.shape)}")
    if q.dtype != torch.int8 or scale.shape != (q.shape[0],):
        raise ValueError("weights must be int8 [N, K] with one fp32 scale per output channel")
    if bias is not None and bias.shape != (q.shape[0],):
        raise ValueError(f"bias must be [N]={q.shape[0]}, got {tuple(bias.shape)}")


def quantize_rows(x: torch.Tensor, *, block_k: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8 (weights per output channel, activations per token)."""
    if x.dim() != 2:
        raise ValueError("quantize_rows takes a 2-D tensor")
    if not _runs_triton(x):
        return reference.quantize_rows(x)
    from modelyard.kernels.triton_kernels import quantize_rows_kernel

    x = x.contiguous()
    q = torch.empty(x.shape, dtype=torch.int8, device=x.device)
    scale = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    quantize_rows_kernel[(x.shape[0],)](x, q, scale, x.shape[1], x.stride(0), q.stride(0), BLOCK_K=block_k)
    return q, scale


def w8a16(
    x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None,
    *, blocks: tuple[int, int, int, int] | None = None,
) -> torch.Tensor:  # fmt: skip
    """fp16/bf16 activations times int8 weights with per-channel scales (decode path)."""
    _check(x, q, scale, bias)
    if not _runs_triton(x):
        return reference.w8a16(x, q, scale, bias)
    from modelyard.kernels.triton_kernels import w8a16_kernel

    m, k = x.shape
    n = q.shape[0]
    block_m, block_n, block_k, split_k = blocks or next(b[1:] for b in HOPPER_BLOCKS if m <= b[0])
    x = x.contiguous()
    out = torch.zeros((m, n), dtype=torch.float32 if split_k > 1 else x.dtype, device=x.device)
    grid = (triton_cdiv(m, block_m), triton_cdiv(n, block_n), split_k)
    w8a16_kernel[grid](
        x, q, scale, bias if bias is not None else scale, out, m, n, k,
        x.stride(0), q.stride(0), out.stride(0),
        HAS_BIAS=bias is not None, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, SPLIT_K=split_k,
    )  # fmt: skip
    return out.to(x.dtype)


def w8a8(
    x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None,
    *, blocks: tuple[int, int, int] = W8A8_BLOCKS, quant_block_k: int = 128,
) -> torch.Tensor:  # fmt: skip
    """Dynamic per-token int8 activations, int8 x int8 -> int32, scaled epilogue (prefill path)."""
    _check(x, q, scale, bias)
    if not _runs_triton(x):
        return reference.w8a8(x, q, scale, bias)
    from modelyard.kernels.triton_kernels import w8a8_kernel

    xq, xs = quantize_rows(x, block_k=quant_block_k)
    m, k = x.shape
    n = q.shape[0]
    out = torch.empty((m, n), dtype=x.dtype, device=x.device)
    block_m, block_n, block_k = blocks
    grid = (triton_cdiv(m, block_m), triton_cdiv(n, block_n))
    w8a8_kernel[grid](
        xq, xs, q, scale, bias if bias is not None else scale, out, m, n, k, xq.stride(0), q.stride(0),
        out.stride(0), HAS_BIAS=bias is not None, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
    )  # fmt: skip
    return out


def int8_linear(
    x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """The dispatcher: W8A16 for decode-sized batches, W8A8 above; any leading dims on ``x``."""
    rows = x.reshape(-1, x.shape[-1])
    out = w8a16(rows, q, scale, bias) if rows.shape[0] <= W8A16_MAX_M else w8a8(rows, q, scale, bias)
    return out.reshape(*x.shape[:-1], q.shape[0])


def triton_cdiv(a: int, b: int) -> int:
    """Ceiling division (what ``triton.cdiv`` does, without importing Triton on the host)."""
    return -(-a // b)
