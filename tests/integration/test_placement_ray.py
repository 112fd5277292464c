"""The ``ray`` placement on a real two-node Ray cluster: a replica lands on the node its GPU
type and region name and runs at that node's priority, the fit check reads the cluster's
nodes, a replica no node has room for says it waits for capacity, and a lost node's
replicas are detected and re-placed."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.adapters.engines.base import CapacityUnavailable, ReplicaHandle, ReplicaSpec
from modelyard.domain.catalog.fit import check_fit
from modelyard.domain.catalog.hardware import REGIONS, Preset
from modelyard.domain.catalog.models import find_model
from modelyard.domain.shared.errors import ProvisioningFailed

ray = pytest.importorskip("ray")

from modelyard.adapters.placement.ray import (  # noqa: E402 - only once ray is there
    RayCapacity,
    RayPlacement,
    cluster_capacity,
    connect,
    ray_host_capacity,
    resources_for,
)

pytestmark = pytest.mark.integration

DETECT_S = 120.0


@pytest.fixture
def placement(ray_cluster: Any, tmp_path: Path) -> Iterator[RayPlacement]:
    connect(ray_cluster.address)  # before any actor of a test's own: never a cluster of its own
    held = RayPlacement(ray_cluster.address, tmp_path, schedule_timeout_s=20)
    yield held
    held.stop_all()


def node_resources(placement: RayPlacement, handle: ReplicaHandle) -> dict[str, float]:
    node = placement.node_of(handle)
    found = [n for n in ray.nodes() if n["NodeID"] == node]
    assert len(found) == 1, node
    return dict(found[0]["Resources"])


def unique(prefix: str) -> str:
    # Actor names are cluster-wide, and the cluster outlives each test.
    return f"{prefix}-{secrets.token_hex(4)}"


def sim(**where: str) -> ReplicaSpec:
    return ReplicaSpec(model="sim", engine="simulated", **where)


@ray.remote(num_cpus=0)
class Holder:
    """Holds what it was scheduled with, as a vLLM replica holds its GPU."""

    def ready(self) -> bool:
        return True


def test_a_replica_lands_on_the_node_its_gpu_type_names(placement: RayPlacement) -> None:
    on_mi300x = placement.start(sim(gpu_type="mi300x"), unique("ga"), deployment="d")
    on_h100 = placement.start(sim(gpu_type="h100"), unique("gh"), deployment="d")
    assert "gpu_type:mi300x" in node_resources(placement, on_mi300x)
    assert "gpu_type:h100" in node_resources(placement, on_h100)
    assert placement.node_of(on_mi300x) != placement.node_of(on_h100)
    # Reached at the address its node reports, with its token.
    assert httpx.get(f"{on_mi300x.base_url}/health", headers=on_mi300x.headers).status_code == 200


def test_a_replica_lands_in_the_region_it_names(placement: RayPlacement) -> None:
    handle = placement.start(sim(region="tor1"), unique("rt"), deployment="d")
    assert "region:tor1" in node_resources(placement, handle)


def test_a_replica_runs_at_its_nodes_priority_not_a_ray_workers(placement: RayPlacement) -> None:
    # Ray lowers its workers' priority (niceness +15): a replica that inherited it starved on a
    # busy node. These nodes were started by this process, so at this process's priority.
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    for gpu_type in ("h100", "mi300x"):
        handle = placement.start(sim(gpu_type=gpu_type), unique("nice"), deployment="d")
        assert handle.pid is not None
        assert os.getpriority(os.PRIO_PROCESS, handle.pid) == ours, gpu_type


def test_what_a_replica_asks_of_the_cluster() -> None:
    vllm = resources_for(ReplicaSpec(model="m", engine="vllm", gpu_type="h100", region="nyc2"))
    assert vllm["num_gpus"] == 1
    assert vllm["resources"]["gpu_type:h100"] == 1.0
    assert 0 < vllm["resources"]["region:nyc2"] < 0.01
    cpu = resources_for(sim(gpu_type="mi300x"))
    assert cpu["num_gpus"] == 0
    # A simulated replica only selects its node by type: it does not use the GPU up.
    assert 0 < cpu["resources"]["gpu_type:mi300x"] < 0.01


def test_a_replica_no_live_node_could_hold_is_refused_at_once(placement: RayPlacement) -> None:
    with pytest.raises(CapacityUnavailable, match="waiting for capacity: no live node") as caught:
        placement.start(sim(gpu_type="mi325x"), unique("gm"), deployment="d")
    assert "gpu_type:mi325x" in str(caught.value)
    assert "gpu_type:h100" in str(caught.value)  # what the nodes have
    assert placement.replicas("d") == []


def test_a_replica_with_no_room_now_is_refused_at_once_as_waiting(placement: RayPlacement) -> None:
    # Every CPU of both nodes taken: the cluster could hold the replica, but not now. No actor
    # is left queued behind the caller: the reconciler asks again on its next pass.
    holders = [Holder.options(num_cpus=2).remote() for _ in range(2)]  # type: ignore[attr-defined]
    try:
        ray.get([h.ready.remote() for h in holders], timeout=120)
        with pytest.raises(CapacityUnavailable, match="waiting for capacity: the Ray cluster has no room"):
            placement.start(sim(), unique("busy"), deployment="d")
        assert placement.replicas("d") == []
    finally:
        for holder in holders:
            ray.kill(holder)
    # Once room is free again (Ray frees a killed actor's resources soon after), a start
    # succeeds, as the reconciler's next pass would.
    deadline = time.monotonic() + 60
    while True:
        try:
            handle = placement.start(sim(), unique("room"), deployment="d")
            break
        except CapacityUnavailable:
            assert time.monotonic() < deadline, "the holders' CPUs were never free again"
            time.sleep(0.5)
    assert placement.alive(handle)


def test_the_fit_check_reads_the_clusters_nodes(ray_cluster: Any) -> None:
    view = cluster_capacity(ray_cluster.address)
    assert view.gpu_types == {"h100", "mi300x"}
    assert view.regions == {"nyc2", "tor1"}
    host = ray_host_capacity(ray_cluster.address, engine="simulated", gguf_models="")
    assert host.gpu_types == {"h100", "mi300x"}
    assert host.regions == {"nyc2", "tor1"}
    model = find_model("smollm2-135m")
    check_fit(model, host, gpu_type="mi300x", region="tor1", preset=Preset.BALANCED)
    with pytest.raises(ProvisioningFailed, match="No mi325x GPU on this cluster"):
        check_fit(model, host, gpu_type="mi325x", region=None, preset=Preset.BALANCED)
    missing = next(r for r in REGIONS if r not in {"nyc2", "tor1"})
    with pytest.raises(ProvisioningFailed, match=f"No capacity in region {missing}"):
        check_fit(model, host, gpu_type=None, region=missing, preset=Preset.BALANCED)


def test_the_fit_check_sees_a_gpu_type_taken_and_freed(ray_cluster: Any) -> None:
    connect(ray_cluster.address)
    capacity = RayCapacity(ray_cluster.address, engine="auto", gguf_models="", ttl_s=0)
    model = find_model("llama3.1-8b")
    check_fit(model, capacity(), gpu_type="h100", region=None, preset=Preset.BALANCED)
    holder = Holder.options(resources={"gpu_type:h100": 1}).remote()  # type: ignore[attr-defined]
    try:
        assert ray.get(holder.ready.remote(), timeout=120)
        deadline = time.monotonic() + 30
        while "h100" in (capacity().free_gpu_types or ()) and time.monotonic() < deadline:
            time.sleep(0.2)
        with pytest.raises(
            ProvisioningFailed, match="Every h100 GPU on this cluster is in use; free now: mi300x"
        ):
            check_fit(model, capacity(), gpu_type="h100", region=None, preset=Preset.BALANCED)
    finally:
        ray.kill(holder)
    deadline = time.monotonic() + 30
    while "h100" not in (capacity().free_gpu_types or ()) and time.monotonic() < deadline:
        time.sleep(0.2)
    check_fit(model, capacity(), gpu_type="h100", region=None, preset=Preset.BALANCED)


def test_a_lost_node_is_detected_and_its_replicas_replaced_elsewhere(
    placement: RayPlacement, ray_cluster: Any
) -> None:
    # Spread over both nodes; the one on the worker goes with it.
    handles = placement.start_many("dep_n", sim(), 2)
    on_worker = [h for h in handles if "gpu_type:mi300x" in node_resources(placement, h)]
    assert len(on_worker) == 1, [node_resources(placement, h) for h in handles]
    survivor = next(h for h in handles if h not in on_worker)
    try:
        ray_cluster.worker.kill()
        deadline = time.monotonic() + DETECT_S
        while not (dead := placement.dead("dep_n")) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert dead == on_worker
        fresh = placement.replace(on_worker[0])
        assert "gpu_type:h100" in node_resources(placement, fresh)
        assert placement.replicas("dep_n") == [survivor, fresh]
        assert httpx.get(f"{fresh.base_url}/health", headers=fresh.headers).status_code == 200
    finally:
        ray_cluster.worker.up()
