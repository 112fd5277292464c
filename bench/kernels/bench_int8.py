"""GPU benchmark of the int8 kernels against bf16 cuBLAS and ``torch._int_mm``, in one run.

    .venv/bin/python bench/kernels/bench_int8.py --out bench/kernels/results.md

Needs a CUDA GPU (none was available where this script was written: its figures are still
to be taken). For every Llama-3-8B layer shape (N x K) and batch M it times bf16
``torch.matmul``, our W8A16, our W8A8 (activation quantization included) and
``torch._int_mm`` (int8 in, int32 out, where its shape rules allow), rotating through
enough weight copies that L2 never holds them. It prints and writes a table: time,
speedup over bf16, bytes moved per second as a fraction of the device-to-device copy
bandwidth measured in the same run, and TOPS at large M. Then decode tokens/s at batch 1
through the linear layers of an 8B Llama (32 layers + LM head, random weights), bf16 vs
int8.
"""

from __future__ import annotations

import argparse
import datetime
import math
import subprocess
from collections.abc import Callable

import torch

from modelyard.kernels import ops

SHAPES = [(4096, 4096), (6144, 4096), (14336, 4096), (4096, 14336), (28672, 4096), (128256, 4096)]
BATCHES = [1, 2, 4, 8, 16, 32, 64, 256, 1024, 4096]
L2_FLUSH_BYTES = 256 * 2**20


def _time_ms(fn: Callable[[int], object], rotations: int, iters: int = 30) -> float:
    for i in range(3):
        fn(i % rotations)
    torch.cuda.synchronize()
    samples = []
    for i in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(i % rotations)
        end.record()
        torch.cuda.synchronize()
        samples.append(start.elapsed_time(end))
    return sorted(samples)[len(samples) // 2]


def copy_bandwidth() -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write counted)."""
    src = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = _time_ms(lambda _: dst.copy_(src), 1, iters=20)
    return 2 * src.numel() / (ms / 1000)


def bench_shape(n: int, k: int, m: int, bandwidth: float) -> dict[str, float | str]:
    """One row of the table."""
    weight_bytes = n * k * 2
    rotations = max(2, min(8, math.ceil(L2_FLUSH_BYTES / weight_bytes)))
    ws = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(rotations)]
    qs = [ops.quantize_rows(w) for w in ws]
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    bf16 = _time_ms(lambda i: torch.matmul(x, ws[i].T), rotations)
    w8a16 = _time_ms(lambda i: ops.w8a16(x, *qs[i]), rotations) if m <= ops.W8A16_MAX_M else float("nan")
    w8a8 = _time_ms(lambda i: ops.w8a8(x, *qs[i]), rotations)
    int_mm = float("nan")
    if m > 16 and m % 8 == 0:
        xq = torch.randint(-127, 127, (m, k), device="cuda", dtype=torch.int8)
        qts = [q.T for q, _ in qs]
        int_mm = _time_ms(lambda i: torch._int_mm(xq, qts[i]), rotations)
    best_int8 = min(v for v in (w8a16, w8a8) if not math.isnan(v))
    moved = n * k + m * k * 2 + m * n * 2
    return {
        "shape": f"{n}x{k}", "M": m, "bf16_ms": bf16, "w8a16_ms": w8a16, "w8a8_ms": w8a8, "int_mm_ms": int_mm,
        "speedup": bf16 / best_int8, "bw_frac": moved / (best_int8 / 1000) / bandwidth,
        "tops": 2 * m * n * k / (best_int8 / 1000) / 1e12,
    }  # fmt: skip


def decode_tokens_per_s() -> tuple[float, float]:
    """Batch-1 decode through an 8B Llama's linear layers: bf16 vs int8 tokens/s."""
    layer = [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]
    shapes = layer * 32 + [(128256, 4096)]
    weights = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02 for n, k in shapes]
    quantized = [ops.quantize_rows(w) for w in weights]
    xs = {k: torch.randn(1, k, device="cuda", dtype=torch.bfloat16) for _, k in shapes}

    def bf16_token(_: int) -> None:
        for (_, k), w in zip(shapes, weights, strict=True):
            torch.matmul(xs[k], w.T)

    def int8_token(_: int) -> None:
        for (_, k), (q, s) in zip(shapes, quantized, strict=True):
            ops.w8a16(xs[k], q, s)

    return 1000 / _time_ms(bf16_token, 1, iters=10), 1000 / _time_ms(int8_token, 1, iters=10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="bench/kernels/results.md")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                            capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    bandwidth = copy_bandwidth()
    lines = [
        f"# int8 kernels on {torch.cuda.get_device_name()} (driver {driver}), {datetime.date.today()}",
        "",
        f"Device-to-device copy bandwidth measured in this run: {bandwidth / 1e9:.0f} GB/s.",
        "",
        "| shape NxK | M | bf16 ms | W8A16 ms | W8A8 ms | _int_mm ms | speedup | of copy BW | TOPS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n, k in SHAPES:
        for m in BATCHES:
            r = bench_shape(n, k, m, bandwidth)
            lines.append(
                f"| {r['shape']} | {m} | {r['bf16_ms']:.4f} | {r['w8a16_ms']:.4f} | {r['w8a8_ms']:.4f} | "
                f"{r['int_mm_ms']:.4f} | {r['speedup']:.2f}x | {r['bw_frac']:.0%} | {r['tops']:.1f} |"
            )
            print(lines[-1], flush=True)
    bf16_tps, int8_tps = decode_tokens_per_s()
    ratio = int8_tps / bf16_tps
    lines += [
        "",
        f"Decode, batch 1, 8B Llama linears: bf16 {bf16_tps:.1f}, int8 {int8_tps:.1f} tok/s ({ratio:.2f}x).",
    ]
    print(lines[-1])
    with open(args.out, "w") as handle:
        handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
