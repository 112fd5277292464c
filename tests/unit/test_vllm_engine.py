"""The vLLM engine on its own: preset arguments, /metrics parsing, the plugin's wiring."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json

import pytest

from modelyard.adapters.engines.metrics import ReplicaMetrics, parse_metrics
from modelyard.adapters.engines.vllm_args import INT8_QUANTIZATION, PRESET_ARGS, vllm_command

VLLM_METRICS = """
# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="llama3.1-8b"} 3.0
vllm:num_requests_waiting{model_name="llama3.1-8b"} 7.0
vllm:generation_tokens_total{model_name="llama3.1-8b"} 1500.0
vllm:prompt_tokens_total{model_name="llama3.1-8b"} 900.0
vllm:time_to_first_token_seconds_bucket{le="0.02",model_name="llama3.1-8b"} 10.0
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="llama3.1-8b"} 90.0
vllm:time_to_first_token_seconds_bucket{le="0.5",model_name="llama3.1-8b"} 99.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="llama3.1-8b"} 100.0
vllm:time_to_first_token_seconds_sum{model_name="llama3.1-8b"} 6.5
vllm:time_to_first_token_seconds_count{model_name="llama3.1-8b"} 100.0
"""


def _arg(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_each_preset_maps_to_its_engine_arguments() -> None:
    speed = vllm_command("llama3.1-8b", port=9000, preset="speed")
    latency = vllm_command("llama3.1-8b", port=9000, preset="latency")
    cost = vllm_command("llama3.1-8b", port=9000, preset="cost")
    balanced = vllm_command("llama3.1-8b", port=9000, preset="balanced")
    assert _arg(speed, "--model") == "meta-llama/Llama-3.1-8B-Instruct"
    assert _arg(speed, "--served-model-name") == "llama3.1-8b"
    assert (_arg(speed, "--host"), _arg(speed, "--port")) == ("127.0.0.1", "9000")
    assert _arg(speed, "--dtype") == "bfloat16"
    assert int(_arg(speed, "--max-num-seqs")) > int(_arg(latency, "--max-num-seqs"))
    assert json.loads(_arg(latency, "--speculative-config"))["method"] == "ngram"
    assert _arg(cost, "--quantization") == INT8_QUANTIZATION
    assert "--quantization" not in balanced
    assert "--max-num-seqs" not in balanced
    assert set(PRESET_ARGS) == {"speed", "latency", "cost", "balanced"}
    with pytest.raises(KeyError):
        vllm_command("llama3.1-8b", port=1, preset="turbo")


def test_vllm_metrics_are_read() -> None:
    stats = parse_metrics(VLLM_METRICS)
    assert (stats.running, stats.waiting) == (3, 7)
    assert (stats.prompt_tokens, stats.generation_tokens) == (900, 1500)
    assert stats.ttft_count == 100
    assert stats.ttft_percentile_s(50) == 0.1
    assert stats.ttft_percentile_s(99) == 0.5


def test_our_replicas_metrics_read_back_through_the_same_parser() -> None:
    metrics = ReplicaMetrics(model="smollm2-135m")
    metrics.queued()
    metrics.queued()
    metrics.started(0.03)
    metrics.finished({"prompt_tokens": 12, "completion_tokens": 30})
    stats = parse_metrics(metrics.render())
    assert (stats.running, stats.waiting, stats.generation_tokens, stats.prompt_tokens) == (1, 1, 30, 12)
    assert stats.ttft_percentile_s(50) == 0.04


def test_the_quantization_plugin_is_declared_for_vllm() -> None:
    plugins = importlib.metadata.entry_points(group="vllm.general_plugins")
    ours = [p for p in plugins if p.name == INT8_QUANTIZATION]
    assert ours
    assert ours[0].value == "modelyard.kernels.vllm_plugin:register"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_without_vllm_register_says_so() -> None:
    from modelyard.kernels.vllm_plugin import register

    assert register() is False


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed here")
def test_with_vllm_the_method_is_a_quantization_choice() -> None:
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS

    from modelyard.kernels.vllm_plugin import register

    assert register() is True
    assert INT8_QUANTIZATION in QUANTIZATION_METHODS


def test_our_exposition_keeps_vllms_names_and_types() -> None:
    metrics = ReplicaMetrics(model="m")
    metrics.queued()
    metrics.started(0.03)
    metrics.left(started=True, completed=False)  # the client left mid-stream
    metrics.queued()
    text = metrics.render()
    for name, kind in [
        ("vllm:num_requests_running", "gauge"),
        ("vllm:num_requests_waiting", "gauge"),
        ("vllm:prompt_tokens_total", "counter"),
        ("vllm:generation_tokens_total", "counter"),
        ("vllm:time_to_first_token_seconds", "histogram"),
        ("modelyard:requests_cancelled_total", "counter"),
        ("modelyard:engine_generations_active", "gauge"),
        ("modelyard:engine_chunks_total", "counter"),
    ]:
        assert f"# TYPE {name} {kind}\n" in text, name
    assert 'modelyard:requests_cancelled_total{model_name="m"} 1.0\n' in text
    assert 'vllm:time_to_first_token_seconds_bucket{le="0.04",model_name="m"} 1.0\n' in text
    stats = parse_metrics(text)
    assert (stats.running, stats.waiting, stats.ttft_count) == (0, 1, 1)
