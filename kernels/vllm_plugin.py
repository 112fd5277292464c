"""The ``cost`` preset's quantization method for vLLM: ``--quantization modelyard_int8``.

vLLM calls ``register`` (entry point ``vllm.general_plugins``) in every process before it
parses arguments. The method loads a checkpoint's ordinary weights, quantizes them per
output channel to int8 once loaded, and runs every linear layer through this package's
Triton kernels. Without vLLM installed, ``register`` does nothing and says so.
"""

from __future__ import annotations

from typing import Any

import torch

from modelyard.kernels.ops import int8_linear, quantize_rows

QUANTIZATION_NAME = "modelyard_int8"


def register() -> bool:
    """Register the quantization method with vLLM; False where vLLM is not installed."""
    try:
        from vllm.model_executor.layers.linear import LinearBase, LinearMethodBase
        from vllm.model_executor.layers.quantization import register_quantization_config
        from vllm.model_executor.layers.quantization.base_config import QuantizationConfig
        from vllm.model_executor.parameter import ModelWeightParameter
    except ImportError:
        return False

    class Int8LinearMethod(LinearMethodBase):  # type: ignore[misc]
        """Full-precision weights in, int8 weights and per-channel scales after loading."""

        def create_weights(  # noqa: PLR0917 - vLLM's signature
            self, layer: torch.nn.Module, input_size_per_partition: int, output_partition_sizes: list[int],
            input_size: int, output_size: int, params_dtype: torch.dtype, **extra: Any,
        ) -> None:  # fmt: skip
            weight = ModelWeightParameter(
                data=torch.empty(sum(output_partition_sizes), input_size_per_partition, dtype=params_dtype),
                input_dim=1, output_dim=0, weight_loader=extra["weight_loader"],
            )  # fmt: skip
            layer.register_parameter("weight", weight)

        def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
            q, scale = quantize_rows(layer.get_parameter("weight").data)
            layer.qweight = torch.nn.Parameter(q, requires_grad=False)
            layer.wscale = torch.nn.Parameter(scale, requires_grad=False)
            del layer.weight

        def apply(
            self, layer: torch.nn.Module, x: torch.Tensor, bias: torch.Tensor | None = None
        ) -> torch.Tensor:
            qweight, wscale = layer.get_parameter("qweight"), layer.get_parameter("wscale")
            return int8_linear(x, qweight, wscale, bias)

    @register_quantization_config(QUANTIZATION_NAME)
    class Int8Config(QuantizationConfig):  # type: ignore[misc]
        """No checkpoint format of its own: any fp16/bf16 checkpoint is quantized on load."""

        def get_name(self) -> str:
            return QUANTIZATION_NAME

        def get_supported_act_dtypes(self) -> list[torch.dtype]:
            return [torch.bfloat16, torch.float16]

        @classmethod
        def get_min_capability(cls) -> int:
            return 80

        @staticmethod
        def get_config_filenames() -> list[str]:
            return []

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> Int8Config:
            return cls()

        def get_quant_method(self, layer: torch.nn.Module, prefix: str) -> Int8LinearMethod | None:
            return Int8LinearMethod() if isinstance(layer, LinearBase) else None

    return True
