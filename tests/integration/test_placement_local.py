"""LocalPlacement with real replica processes: start, detect a dead one, replace, stop; the balancer."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import openai
import pytest

from modelyard.adapters.engines.base import PlacementError, ReplicaHandle, ReplicaSpec
from modelyard.adapters.engines.models import gguf_paths, replica_spec
from modelyard.adapters.placement.balancer import LeastLoadedBalancer, NoHealthyReplica
from modelyard.adapters.placement.local import LocalPlacement

pytestmark = pytest.mark.integration

SIMULATED = ReplicaSpec(model="sim", engine="simulated")


@pytest.fixture
def placement(tmp_path: Path) -> Iterator[LocalPlacement]:
    held = LocalPlacement(tmp_path, gpu=False)
    yield held
    held.stop_all()


def _exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _chat(handle: ReplicaHandle, text: str) -> str:
    key = handle.token or (handle.spec.upstream_key if handle.spec else None) or "none"
    client = openai.OpenAI(base_url=f"{handle.base_url}/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(model="sim", messages=[{"role": "user", "content": text}])
    return reply.choices[0].message.content or ""


def test_a_killed_replica_is_detected_and_replaced(placement: LocalPlacement) -> None:
    first, second = placement.start_many("dep_a", SIMULATED, 2)
    assert first.base_url != second.base_url
    assert placement.dead("dep_a") == []
    assert first.pid is not None
    os.kill(first.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not (dead := placement.dead("dep_a")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dead == [first]
    assert first.healthy is False
    fresh = placement.replace(first)
    assert fresh.pid not in (first.pid, second.pid)
    assert fresh.deployment == "dep_a"
    assert fresh.healthy
    assert placement.replicas("dep_a") == [second, fresh]
    assert placement.dead("dep_a") == []
    assert _chat(fresh, "still here") == "still here"


def test_stopping_a_deployment_terminates_and_reaps_its_processes(placement: LocalPlacement) -> None:
    handles = placement.start_many("dep_b", SIMULATED, 2)
    other = placement.start(SIMULATED, "other", deployment="dep_c")
    pids = [h.pid for h in handles]
    placement.stop_deployment("dep_b")
    assert placement.replicas("dep_b") == []
    # Reaped, not zombies: the kernel has forgotten the pids.
    assert not any(_exists(pid) for pid in pids if pid is not None)
    assert placement.alive(other)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{handles[0].base_url}/health")


def test_a_gpu_engine_on_a_cpu_host_is_refused_with_the_reason(placement: LocalPlacement) -> None:
    with pytest.raises(PlacementError, match="needs a CUDA GPU"):
        placement.start(ReplicaSpec(model="llama3.1-8b", engine="vllm"), "gpu-1", deployment="dep_g")
    assert placement.replicas("dep_g") == []


def test_a_gpu_model_without_a_gguf_file_cannot_be_placed_here() -> None:
    if gguf_paths("").get("llama3.1-8b"):
        pytest.skip("an operator mapped a GGUF for llama3.1-8b here")
    if Path("/dev/nvidiactl").exists():
        pytest.skip("this host has a GPU")
    with pytest.raises(PlacementError, match="needs a GPU"):
        replica_spec("llama3.1-8b", engine="auto", gguf=gguf_paths(""), preset="speed")


def test_a_replica_that_cannot_load_its_model_fails_placement(
    placement: LocalPlacement, tmp_path: Path
) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not GGUF")
    spec = ReplicaSpec(model="broken", engine="llamacpp", path=str(bogus))
    with pytest.raises(PlacementError, match="exited"):
        placement.start_many("dep_x", spec, 2)
    assert placement.replicas("dep_x") == []


def test_an_upstream_replica_runs_nothing_and_serves_through_its_url(placement: LocalPlacement) -> None:
    server = placement.start(SIMULATED, "backing", deployment="elsewhere")
    # An upstream has its own key: here, the token of the replica standing in for it.
    upstream = ReplicaSpec(
        model="sim", engine="upstream", upstream_url=f"{server.base_url}/v1/", upstream_key=server.token
    )
    handle = placement.start(upstream, "routed", deployment="dep_u")
    assert handle.pid is None
    assert handle.token == ""
    assert handle.base_url == server.base_url
    assert placement.alive(handle)
    assert _chat(handle, "via upstream") == "via upstream"
    placement.stop(server)
    assert not placement.alive(handle)
    assert placement.dead("dep_u") == [handle]


def test_the_balancer_picks_the_least_loaded_healthy_replica(placement: LocalPlacement) -> None:
    a, b, c = placement.start_many("dep_lb", SIMULATED, 3)
    balancer = LeastLoadedBalancer(placement)
    # Idle replicas take turns.
    first_round = [balancer.acquire("dep_lb") for _ in range(3)]
    assert sorted(h.name for h in first_round) == sorted(h.name for h in (a, b, c))
    balancer.release(b)
    # b is the only one with nothing in flight.
    assert balancer.acquire("dep_lb") is b
    balancer.release(a)
    balancer.release(c)
    assert {balancer.acquire("dep_lb").name, balancer.acquire("dep_lb").name} == {a.name, c.name}
    assert (a.in_flight, b.in_flight, c.in_flight) == (1, 1, 1)
    for handle in (a, b, c):
        balancer.release(handle)
    with pytest.raises(ValueError, match="no request in flight"):
        balancer.release(a)
    assert b.pid is not None
    os.kill(b.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not placement.dead("dep_lb") and time.monotonic() < deadline:
        time.sleep(0.05)
    picks = set()
    for _ in range(4):
        with balancer.lease("dep_lb") as handle:
            picks.add(handle.name)
            assert _chat(handle, "ok") == "ok"
    assert picks == {a.name, c.name}
    with pytest.raises(NoHealthyReplica):
        balancer.acquire("dep_none")


def test_a_stopped_replica_takes_its_log_with_it(placement: LocalPlacement, tmp_path: Path) -> None:
    kept = placement.start(SIMULATED, "kept", deployment="dep_l")
    gone = placement.start(SIMULATED, "gone", deployment="dep_l")
    assert placement.log_path("gone").exists()
    placement.stop(gone)
    assert list(tmp_path.glob("gone.log*")) == []
    assert placement.log_path("kept").exists()
    placement.stop_all()
    assert list(tmp_path.glob("*.log*")) == []
    assert not placement.alive(kept)


def test_a_replica_that_died_is_reported_with_the_end_of_its_log(
    placement: LocalPlacement, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    handle = placement.start(SIMULATED, "dying", deployment="dep_d")
    assert handle.pid is not None
    os.kill(handle.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while placement.alive(handle) and time.monotonic() < deadline:
        time.sleep(0.05)
    with caplog.at_level("WARNING", logger="modelyard.adapters.placement.local"):
        placement.stop(handle)
    assert f"replica dying exited with status {-signal.SIGKILL}" in caplog.text
    assert "Application startup complete" in caplog.text
    assert list(tmp_path.glob("dying.log*")) == []


def test_a_sweep_removes_the_logs_of_replicas_it_does_not_hold(
    placement: LocalPlacement, tmp_path: Path
) -> None:
    held = placement.start(SIMULATED, "held", deployment="dep_s")
    for leftover in ("old-r1.log", "old-r1.log.1", "older.log"):
        (tmp_path / leftover).write_text("from a previous server\n")
    placement.sweep()
    assert sorted(p.name for p in tmp_path.glob("*.log*")) == ["held.log"]
    assert placement.alive(held)


def test_the_heartbeat_says_when_the_placement_last_saw_its_replicas(placement: LocalPlacement) -> None:
    assert placement.last_heartbeat() is None
    before = datetime.now(UTC)
    placement.heartbeat()
    seen = placement.last_heartbeat()
    assert seen is not None
    assert abs((seen - before).total_seconds()) < 5
