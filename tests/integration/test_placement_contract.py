"""The placement contract, run against ``local`` (processes here) and ``ray`` (actors on a real
two-node Ray cluster): start, answer with the token, detect a killed replica, replace it,
stop, all-or-nothing starts."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from modelyard.adapters.engines.base import PlacementError, ReplicaHandle, ReplicaSpec
from modelyard.adapters.placement.base import Placement
from modelyard.adapters.placement.local import LocalPlacement

pytestmark = pytest.mark.integration

SIMULATED = ReplicaSpec(model="sim", engine="simulated")
# A loaded machine starts a Ray worker process slowly; detection waits on Ray's own verdict.
DETECT_S = 90.0


@pytest.fixture(params=["local", "ray"])
def placement(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Placement]:
    held: Placement
    if request.param == "ray":
        from modelyard.adapters.placement.ray import RayPlacement

        cluster = request.getfixturevalue("ray_cluster")
        held = RayPlacement(cluster.address, tmp_path)
    else:
        held = LocalPlacement(tmp_path, gpu=False)
    yield held
    held.stop_all()


def kill(placement: Placement, handle: ReplicaHandle) -> None:
    """Kill a replica as its placement's world would: the process here, the actor on Ray."""
    if isinstance(placement, LocalPlacement):
        assert handle.pid is not None
        os.kill(handle.pid, signal.SIGKILL)
        return
    import ray

    from modelyard.adapters.placement.ray import NAMESPACE

    ray.kill(ray.get_actor(handle.name, namespace=NAMESPACE))


def chat(handle: ReplicaHandle, text: str) -> str:
    client = openai.OpenAI(base_url=f"{handle.base_url}/v1", api_key=handle.token, max_retries=0)
    reply = client.chat.completions.create(model="sim", messages=[{"role": "user", "content": text}])
    return reply.choices[0].message.content or ""


def wait_dead(placement: Placement, deployment: str) -> list[ReplicaHandle]:
    deadline = time.monotonic() + DETECT_S
    while not (dead := placement.dead(deployment)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return dead


def test_replicas_start_answer_only_their_token_and_are_listed(placement: Placement) -> None:
    first, second = placement.start_many("dep_a", SIMULATED, 2)
    assert first.base_url != second.base_url
    assert placement.replicas("dep_a") == [first, second]
    assert all(placement.alive(h) for h in (first, second))
    assert chat(first, "hello there") == "hello there"
    assert httpx.get(f"{first.base_url}/v1/models").status_code == 401
    assert httpx.get(f"{first.base_url}/v1/models", headers=second.headers).status_code == 403


def test_a_killed_replica_is_detected_and_replaced(placement: Placement) -> None:
    first, second = placement.start_many("dep_k", SIMULATED, 2)
    assert placement.dead("dep_k") == []
    kill(placement, first)
    assert wait_dead(placement, "dep_k") == [first]
    assert first.healthy is False
    fresh = placement.replace(first)
    assert fresh.name != first.name
    assert fresh.deployment == "dep_k"
    assert fresh.healthy
    assert placement.replicas("dep_k") == [second, fresh]
    assert placement.dead("dep_k") == []
    assert chat(fresh, "still here") == "still here"


def test_stopping_a_deployment_stops_its_replicas_only(placement: Placement) -> None:
    handles = placement.start_many("dep_s", SIMULATED, 2)
    other = placement.start(SIMULATED, "other-" + os.urandom(3).hex(), deployment="dep_o")
    placement.stop_deployment("dep_s")
    assert placement.replicas("dep_s") == []
    for handle in handles:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{handle.base_url}/health", timeout=5)
    assert placement.alive(other)
    assert chat(other, "unaffected") == "unaffected"


def test_a_start_that_fails_leaves_nothing(placement: Placement, tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not GGUF")
    spec = ReplicaSpec(model="broken", engine="llamacpp", path=str(bogus), threads=1)
    with pytest.raises(PlacementError, match="exited"):
        placement.start_many("dep_x", spec, 2)
    assert placement.replicas("dep_x") == []


def test_heartbeat_dates_when_replicas_were_last_seen(placement: Placement) -> None:
    assert placement.last_heartbeat() is None
    placement.heartbeat()
    seen = placement.last_heartbeat()
    assert seen is not None
    assert abs(time.time() - seen.timestamp()) < 60
