"""A deployment no node of the Ray cluster has room for says so, then runs once room frees.

``modelyard serve`` places simulated replicas on the real two-node Ray cluster; actors that
hold every CPU of both nodes stand for other tenants' replicas. The deployment stays
``provisioning`` (the dialects' own status) with ``waiting_for_capacity`` saying why and
since when, one ``CapacityAwaited`` recorded; once the holders go it is placed and active.
A server whose wait limit is short fails such a deployment with the reason instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.domain.deployments import events as ev
from modelyard.domain.shared import ids

from .conftest import Yard
from .test_second_dialect import BASE, poll_status

ray = pytest.importorskip("ray")

from modelyard.adapters.placement.ray import connect  # noqa: E402 - only once ray is there

from .test_ray_placement import _events, _yard  # noqa: E402 - only once ray is there

pytestmark = pytest.mark.e2e


class Holder:
    """An actor that only holds the CPUs it was given."""

    def ready(self) -> bool:
        return True


@pytest.fixture
def every_cpu_held(ray_cluster: Any) -> Iterator[list[Any]]:
    """Every CPU of the cluster taken by actors (killed by the test, or at its end)."""
    connect(ray_cluster.address)
    cpus = int(ray.available_resources().get("CPU", 0))
    holders = [ray.remote(num_cpus=1)(Holder).remote() for _ in range(cpus)]
    ray.get([h.ready.remote() for h in holders], timeout=180)
    yield holders
    for holder in holders:
        ray.kill(holder)


def _until(client: httpx.Client, dep_id: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The deployment once ``done`` holds of it (as it is after two minutes, if never)."""
    deadline = time.monotonic() + 120
    while True:
        shown: dict[str, Any] = client.get(f"{BASE}/{dep_id}").json()
        if done(shown) or time.monotonic() > deadline:
            return shown
        time.sleep(0.3)


def _create(client: httpx.Client, name: str) -> str:
    created = client.post(BASE, json={"name": name, "model_id": "smollm2-135m", "replicas": 1})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


@pytest.fixture
def ray_simulated(tmp_path: Path, ray_cluster: Any) -> Iterator[Yard]:
    yield from _yard(tmp_path, ray_cluster, MODELYARD_ENGINE="simulated")


def test_a_deployment_waits_for_room_and_says_so_then_runs(
    ray_simulated: Yard, every_cpu_held: list[Any]
) -> None:
    yard = ray_simulated
    headers = {"Authorization": f"Bearer {yard.key}"}
    with httpx.Client(base_url=yard.urls[0], headers=headers, timeout=60) as client:
        dep_id = _create(client, "queued")
        shown = _until(client, dep_id, lambda d: d["waiting_for_capacity"] is not None)
        assert shown["status"] == "provisioning"
        wait = shown["waiting_for_capacity"]
        assert wait is not None, shown
        assert "waiting for capacity: the Ray cluster has no room" in wait["reason"]
        assert wait["since"]
        # The first dialect shows the same deployment waiting, under its own status name.
        instance = client.get(f"/v1/instances/{ids.instance_ref(ids.parse_deployment_id(dep_id))}").json()
        assert instance["data"]["instance"]["status"] == "provisioning"
        assert instance["data"]["instance"]["waiting_for_capacity"] == wait

        # Several passes later it still waits, and the wait was recorded once.
        time.sleep(3)
        kinds = [type(e) for e in _events(yard, dep_id)]
        assert kinds.count(ev.CapacityAwaited) == 1
        assert ev.ReplicaStarted not in kinds

        for holder in every_cpu_held:  # the other tenants leave
            ray.kill(holder)
        active = poll_status(client, dep_id, "active", timeout=240)
        assert active["waiting_for_capacity"] is None
        kinds = [type(e) for e in _events(yard, dep_id)]
        assert kinds.index(ev.CapacityAwaited) < kinds.index(ev.ReplicaStarted)
        assert kinds.index(ev.ReplicaStarted) < kinds.index(ev.DeploymentActivated)
        assert client.delete(f"{BASE}/{dep_id}").status_code in (200, 202)


@pytest.fixture
def ray_short_wait(tmp_path: Path, ray_cluster: Any) -> Iterator[Yard]:
    yield from _yard(tmp_path, ray_cluster, MODELYARD_ENGINE="simulated", MODELYARD_CAPACITY_WAIT_S="4")


def test_a_wait_past_the_limit_fails_the_deployment_with_the_reason(
    ray_short_wait: Yard, every_cpu_held: list[Any]
) -> None:
    headers = {"Authorization": f"Bearer {ray_short_wait.key}"}
    with httpx.Client(base_url=ray_short_wait.urls[0], headers=headers, timeout=60) as client:
        dep_id = _create(client, "too-long")
        failed = _until(client, dep_id, lambda d: d["status"] == "failed")
        assert failed["status"] == "failed", failed
        assert "waiting for capacity" in failed["failure_reason"]
        assert "for capacity)" in failed["failure_reason"]  # how long it waited
        assert failed["waiting_for_capacity"] is None
        kinds = [type(e) for e in _events(ray_short_wait, dep_id)]
        assert kinds.index(ev.CapacityAwaited) < kinds.index(ev.ProvisioningFailed)
