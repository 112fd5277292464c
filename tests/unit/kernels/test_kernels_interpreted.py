"""Every kernel against its PyTorch reference, over odd shapes, per-dtype tolerances.

On the CPU these run in Triton's interpreter (fp32/fp16 activations: it has no bf16
arithmetic); tests/gpu repeats them with bf16 where CUDA is.
"""

from __future__ import annotations

import pytest
import torch

from modelyard.kernels import ops, reference
from modelyard.kernels.int8_linear import Int8Linear, swap_linears

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: 2e-3, torch.float16: 2e-2}


def _weights(n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=gen) * 0.05
    q, scale = reference.quantize_rows(w)
    bias = torch.randn(n, generator=gen) * 0.1
    return q.to(DEVICE), scale.to(DEVICE), bias.to(DEVICE)


@pytest.mark.parametrize(("n", "k"), [(1, 1), (7, 33), (64, 130), (3, 257)])
def test_quantize_rows_matches_the_reference_exactly(n: int, k: int) -> None:
    x = (torch.randn(n, k, generator=torch.Generator().manual_seed(n * k)) * 3).to(DEVICE)
    x[0, :] = 0  # an all-zero row keeps scale 1
    q, scale = ops.quantize_rows(x, block_k=32)
    q_ref, scale_ref = reference.quantize_rows(x)
    assert q.dtype == torch.int8
    torch.testing.assert_close(scale, scale_ref, rtol=1e-6, atol=0)
    assert (q.int() - q_ref.int()).abs().max() <= 1  # a tie may round either way
    assert (q == q_ref).float().mean() > 0.999


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize(
    ("m", "n", "k", "split_k"), [(1, 50, 70, 1), (3, 33, 100, 2), (17, 64, 64, 1), (5, 20, 200, 3)]
)
def test_w8a16_matches_the_reference(dtype: torch.dtype, m: int, n: int, k: int, split_k: int) -> None:
    q, scale, bias = _weights(n, k, seed=m + n + k)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m)).to(DEVICE, dtype)
    for with_bias in (bias, None):
        got = ops.w8a16(x, q, scale, with_bias, blocks=(16, 32, 32, split_k))
        want = reference.w8a16(x, q, scale, with_bias)
        assert got.dtype == dtype
        torch.testing.assert_close(got.float(), want.float(), rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize(("m", "n", "k"), [(1, 16, 16), (3, 40, 77), (70, 33, 130)])
def test_w8a8_integer_product_is_exact(m: int, n: int, k: int) -> None:
    q, scale, bias = _weights(n, k, seed=k)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(k + 1)).to(DEVICE)
    got = ops.w8a8(x, q, scale, bias, blocks=(16, 16, 32), quant_block_k=32)
    want = reference.w8a8(x, q, scale, bias)
    # Same int8 inputs, int32 accumulation: only the fp32 epilogue may differ, in the last bits.
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_int8_path_tracks_the_float_path() -> None:
    q, scale, bias = _weights(48, 96, seed=3)
    w = q.float() * scale[:, None]
    x = torch.randn(9, 96, generator=torch.Generator().manual_seed(9)).to(DEVICE)
    exact = x @ w.T + bias
    got = ops.w8a8(x, q, scale, bias, blocks=(16, 16, 32), quant_block_k=32)
    relative = (got - exact).norm() / exact.norm()
    assert relative < 0.02  # per-token int8 activations cost about 1 % here


def test_bad_shapes_are_refused() -> None:
    q, scale, _ = _weights(8, 16, seed=1)
    with pytest.raises(ValueError, match="do not chain"):
        ops.w8a16(torch.randn(2, 15, device=DEVICE), q, scale)
    with pytest.raises(ValueError, match="int8"):
        ops.w8a16(torch.randn(2, 16, device=DEVICE), q.float(), scale)


def test_int8_linear_swaps_a_model_and_stays_close() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 24), torch.nn.ReLU(), torch.nn.Linear(24, 16)).to(DEVICE)
    x = torch.randn(4, 32, device=DEVICE)
    before = model(x)
    assert swap_linears(model) == 2
    assert isinstance(model[0], Int8Linear)
    with torch.no_grad():
        after = model(x)
    assert (after - before).abs().max() < 0.05 * before.abs().max()
