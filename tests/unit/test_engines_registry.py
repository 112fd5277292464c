"""Engines on their own: command lines, base URLs, model files, the simulated backend, metrics."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from modelyard.adapters.engines.backends import SimulatedBackend
from modelyard.adapters.engines.base import EngineStats, Launch, PlacementError, ReplicaSpec, parse_metrics
from modelyard.adapters.engines.lifeline import LIFELINE_MODULE, TOKEN_VARIABLE
from modelyard.adapters.engines.metrics import ReplicaMetrics
from modelyard.adapters.engines.models import SMOLLM2_FILE, gguf_paths, replica_spec
from modelyard.adapters.engines.registry import ENGINES, engine_for


def _arg(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_every_engine_of_the_design_is_registered() -> None:
    assert set(ENGINES) == {
        "llamacpp", "simulated", "upstream", "vllm", "sentence-transformers", "faster-whisper", "espeak-ng",
    }  # fmt: skip
    assert [name for name, engine in ENGINES.items() if engine.needs_gpu] == ["vllm"]
    with pytest.raises(PlacementError, match="no engine called 'tgi'"):
        engine_for("tgi")


def test_models_that_are_not_chat_run_our_replica_on_their_packaged_folders() -> None:
    embed = replica_spec("all-minilm-l6-v2", engine="simulated", gguf={}, preset="balanced")
    whisper = replica_spec("whisper-tiny-en", engine="auto", gguf={}, preset="balanced")
    speech = replica_spec("espeak-ng", engine="auto", gguf={}, preset="balanced")
    # The simulated engine only chats: these are real on every host.
    assert (embed.engine, whisper.engine, speech.engine) == (
        "sentence-transformers",
        "faster-whisper",
        "espeak-ng",
    )
    assert embed.path is not None
    assert (Path(embed.path) / "model.safetensors").exists()
    assert whisper.path is not None
    assert (Path(whisper.path) / "model.bin").exists()
    command = engine_for("sentence-transformers").command(embed.on_port(8102))
    assert (_arg(command, "--backend"), _arg(command, "--path")) == ("embedding", embed.path)
    assert engine_for("faster-whisper").environment("t")["HF_HUB_OFFLINE"] == "1"
    assert "--path" not in engine_for("espeak-ng").command(speech.on_port(8103))


def test_a_llamacpp_replica_runs_our_replica_server_on_its_file() -> None:
    spec = ReplicaSpec(model="smollm2-135m", engine="llamacpp", path="m.gguf", port=8101, threads=3)
    engine = engine_for("llamacpp")
    command = engine.command(spec)
    assert command is not None
    assert command[1:3] == ["-m", "modelyard.adapters.engines.replica"]
    assert (_arg(command, "--backend"), _arg(command, "--path")) == ("llamacpp", "m.gguf")
    assert (_arg(command, "--port"), _arg(command, "--threads")) == ("8101", "3")
    assert engine.base_url(spec) == "http://127.0.0.1:8101"
    with pytest.raises(PlacementError, match="needs a GGUF file"):
        engine.command(ReplicaSpec(model="x", engine="llamacpp", port=1))
    with pytest.raises(ValueError, match="no port yet"):
        engine.base_url(ReplicaSpec(model="x", engine="llamacpp", path="m.gguf"))


def test_a_simulated_replica_carries_its_timing() -> None:
    spec = ReplicaSpec(model="sim", engine="simulated", port=9, ttft_ms=150, tokens_per_s=30)
    command = engine_for("simulated").command(spec)
    assert command is not None
    assert (float(_arg(command, "--ttft-ms")), float(_arg(command, "--tokens-per-s"))) == (150.0, 30.0)


def test_an_upstream_runs_nothing_and_is_addressed_without_v1() -> None:
    engine = engine_for("upstream")
    spec = ReplicaSpec(model="gpt", engine="upstream", upstream_url="https://api.example.com/v1/")
    assert engine.command(spec) is None
    assert engine.base_url(spec) == "https://api.example.com"
    with pytest.raises(PlacementError, match="needs a base URL"):
        engine.base_url(ReplicaSpec(model="gpt", engine="upstream"))


def test_a_vllm_replica_is_vllm_serve_with_the_preset() -> None:
    spec = ReplicaSpec(model="llama3.1-8b", engine="vllm", preset="cost", port=8200)
    command = engine_for("vllm").command(spec)
    assert command is not None
    assert _arg(command, "--port") == "8200"
    assert _arg(command, "--quantization") == "modelyard_int8"


def test_the_bundled_smollm2_and_operator_files_resolve(tmp_path: Path) -> None:
    paths = gguf_paths(f" tiny = {tmp_path / 'tiny.gguf'} ,other={tmp_path / 'o.gguf'}")
    assert Path(paths["smollm2-135m"]).name == SMOLLM2_FILE
    assert Path(paths["smollm2-135m"]).is_file()
    assert paths["tiny"] == str(tmp_path / "tiny.gguf")
    assert paths["other"] == str(tmp_path / "o.gguf")
    with pytest.raises(ValueError, match=r"id=/path/file\.gguf"):
        gguf_paths("just-a-path.gguf")


def test_a_catalog_model_maps_to_its_engine(tmp_path: Path) -> None:
    gguf = gguf_paths("")
    cpu = replica_spec("smollm2-135m", engine="auto", gguf=gguf, preset="speed")
    assert (cpu.engine, cpu.path, cpu.preset) == ("llamacpp", gguf["smollm2-135m"], "speed")
    simulated = replica_spec("llama3.1-8b", engine="simulated", gguf=gguf, preset="balanced")
    assert simulated.engine == "simulated"
    missing = {"smollm2-135m": str(tmp_path / "gone.gguf")}
    with pytest.raises(PlacementError, match="missing on this host"):
        replica_spec("smollm2-135m", engine="auto", gguf=missing, preset="balanced")


def test_the_simulated_backend_is_deterministic_and_bounded() -> None:
    backend = SimulatedBackend(model="sim")
    request = {"messages": [{"role": "user", "content": "one two three four"}], "max_tokens": 3}
    pieces = list(backend.generate(request, threading.Event()))
    assert pieces == list(backend.generate(request, threading.Event()))
    text = "".join(p["delta"].get("content", "") for p in pieces if "delta" in p)
    assert text == "one two three"
    assert [p["finish_reason"] for p in pieces if "delta" in p][-1] == "length"
    assert pieces[-1] == {"usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}}
    cancelled = threading.Event()
    cancelled.set()
    assert list(SimulatedBackend(model="sim", ttft_ms=10_000).generate(request, cancelled)) == []


def test_throughput_and_mean_ttft_come_from_two_readings() -> None:
    metrics = ReplicaMetrics(model="m")
    metrics.queued()
    metrics.queued()
    metrics.started(0.2)
    metrics.started(0.4)
    earlier = parse_metrics(metrics.render())
    metrics.finished({"prompt_tokens": 5, "completion_tokens": 50})
    later = parse_metrics(metrics.render())
    assert later.throughput(earlier, 2.0) == 25.0
    assert later.ttft_mean_s == pytest.approx(0.3)
    assert later.ttft_percentile_s(100) == 0.5
    empty = EngineStats(
        running=0,
        waiting=0,
        prompt_tokens=0,
        generation_tokens=0,
        ttft_count=0,
        ttft_sum_s=0,
        ttft_buckets={},
    )
    assert empty.ttft_mean_s is None
    assert empty.ttft_percentile_s(50) is None
    with pytest.raises(ValueError, match="positive"):
        later.throughput(earlier, 0)


def test_a_launched_replica_is_told_its_parent_and_log_and_gets_its_token_from_the_environment() -> None:
    launch = Launch(parent_pid=4242, log_file="/data/replicas/r.log")
    for name in ("llamacpp", "simulated"):
        engine = engine_for(name)
        spec = ReplicaSpec(model="m", engine=name, path="m.gguf", port=8101)
        command = engine.command(spec, launch)
        assert command is not None
        assert (_arg(command, "--parent-pid"), _arg(command, "--log-file")) == (
            "4242",
            "/data/replicas/r.log",
        )
        assert engine.environment("s3cret") == {TOKEN_VARIABLE: "s3cret"}
        assert not any("s3cret" in part for part in command)
    assert engine_for("upstream").environment("s3cret") == {}


def test_a_launched_vllm_replica_runs_behind_the_lifeline_with_its_key_in_the_environment() -> None:
    spec = ReplicaSpec(model="llama3.1-8b", engine="vllm", port=8200)
    engine = engine_for("vllm")
    command = engine.command(spec, Launch(parent_pid=7, log_file="/x.log"))
    assert command[1:3] == ["-m", LIFELINE_MODULE]
    assert _arg(command, "--parent-pid") == "7"
    assert command[command.index("--") + 1 :] == engine.command(spec)
    assert engine.environment("k") == {"VLLM_API_KEY": "k"}
