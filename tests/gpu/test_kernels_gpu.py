"""The kernels on a real GPU, bf16 included, at Llama-3-8B layer shapes. Skipped without CUDA."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    ("m", "n", "k"), [(1, 14336, 4096), (3, 4096, 14336), (16, 6144, 4096), (64, 4096, 4096)]
)
def test_w8a16_on_gpu(dtype: torch.dtype, m: int, n: int, k: int) -> None:
    from modelyard.kernels import ops, reference

    w = torch.randn(n, k, device="cuda") * 0.02
    q, scale = ops.quantize_rows(w)
    q_ref, scale_ref = reference.quantize_rows(w)
    assert (q.int() - q_ref.int()).abs().max() <= 1
    torch.testing.assert_close(scale, scale_ref)
    x = torch.randn(m, k, device="cuda", dtype=dtype)
    got = ops.w8a16(x, q, scale)
    want = reference.w8a16(x, q, scale, None)
    torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize(("m", "n", "k"), [(256, 4096, 4096), (2048, 14336, 4096), (4096, 4096, 14336)])
def test_w8a8_on_gpu(m: int, n: int, k: int) -> None:
    from modelyard.kernels import ops, reference

    q, scale = ops.quantize_rows(torch.randn(n, k, device="cuda") * 0.02)
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    got = ops.w8a8(x, q, scale)
    want = reference.w8a8(x, q, scale, None)
    torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=2e-2)
