"""``modelyard serve`` with ``MODELYARD_PLACEMENT=ray`` on a real two-node Ray cluster.

On the simulated engine: a deployment lands on the node its GPU type and region name, what
the cluster's nodes do not have is refused at once, a killed replica actor is recorded lost,
the deployment degraded, replaced and recovered, and a destroy removes its actors; a lost
worker node's replica is recorded lost and placed again on the head. On real
llama.cpp (``smollm2-135m``): the five steps, provision, poll, chat, destroy, through a
replica the Ray cluster placed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from modelyard.adapters.eventstore.env import store_env
from modelyard.domain.deployments import events as ev
from modelyard.domain.shared import ids
from modelyard.domain.shared.store import Store
from modelyard.settings import load_settings

from .conftest import Yard, free_port
from .test_five_steps import poll_until
from .test_second_dialect import BASE, poll_status

ray = pytest.importorskip("ray")

from modelyard.adapters.placement.ray import NAMESPACE, connect  # noqa: E402 - only once ray is there

pytestmark = pytest.mark.e2e


def _yard(tmp_path: Path, cluster: Any, **env: str) -> Iterator[Yard]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "POSTGRES_"))}
    placed = {"MODELYARD_PLACEMENT": "ray", "MODELYARD_RAY_ADDRESS": cluster.address}
    yard = Yard(
        env=base | {"MODELYARD_DATA_DIR": str(tmp_path / "data")} | placed | env, cwd=tmp_path, urls=[]
    )
    yard.fund("5.00")
    yard.start("serve", port=free_port())
    yield yard
    yard.stop()


@pytest.fixture
def ray_simulated(tmp_path: Path, ray_cluster: Any) -> Iterator[Yard]:
    """``modelyard serve`` placing simulated replicas on the Ray cluster."""
    yield from _yard(tmp_path, ray_cluster, MODELYARD_ENGINE="simulated")


@pytest.fixture
def ray_llamacpp(tmp_path: Path, ray_cluster: Any) -> Iterator[Yard]:
    """``modelyard serve`` placing llama.cpp replicas on the Ray cluster."""
    yield from _yard(tmp_path, ray_cluster)


def _events(yard: Yard, dep_id: str) -> list[Any]:
    store = Store(env=store_env(load_settings(yard.env)))
    try:
        return list(store.events.get(ids.parse_deployment_id(dep_id)))
    finally:
        store.close()


def _actor(name: str) -> Any:
    return ray.get_actor(name, namespace=NAMESPACE)


def _node_resources(actor: Any) -> dict[str, float]:
    node = ray.get(actor.where.remote(), timeout=60)[2]
    return next(dict(n["Resources"]) for n in ray.nodes() if n["NodeID"] == node)


def test_placed_by_gpu_type_and_region_healed_and_destroyed(ray_simulated: Yard, ray_cluster: Any) -> None:
    connect(ray_cluster.address)
    url = ray_simulated.urls[0]
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {ray_simulated.key}"}, timeout=60
    ) as client:
        # The cluster has no mi325x node and no capacity in atl1: refused at once, nothing kept.
        for where, says in (({"gpu_type": "mi325x"}, "No mi325x GPU"), ({"region": "atl1"}, "region atl1")):
            refused = client.post(BASE, json={"name": "no", "model_id": "smollm2-135m", **where})
            assert refused.status_code == 502, refused.text
            assert says in refused.json()["error"]["message"]
        assert client.get(BASE).json()["deployments"] == []

        spec = {
            "name": "edge",
            "model_id": "smollm2-135m",
            "gpu_type": "mi300x",
            "region": "tor1",
            "replicas": 1,
        }
        created = client.post(BASE, json=spec)
        assert created.status_code == 201, created.text
        dep_id = created.json()["id"]
        active = poll_status(client, dep_id, "active", timeout=240)
        [first] = [e for e in _events(ray_simulated, dep_id) if isinstance(e, ev.ReplicaStarted)]
        placed = _node_resources(_actor(first.replica))
        assert "gpu_type:mi300x" in placed
        assert "region:tor1" in placed

        ray.kill(_actor(first.replica))
        deadline = time.monotonic() + 180
        while True:
            kinds = [type(e) for e in _events(ray_simulated, dep_id)]
            if ev.DeploymentRecovered in kinds or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert kinds.count(ev.ReplicaLost) == 1
        assert kinds.index(ev.DeploymentDegraded) > kinds.index(ev.ReplicaLost)
        assert kinds.index(ev.DeploymentRecovered) > kinds.index(ev.DeploymentDegraded)
        started = [e for e in _events(ray_simulated, dep_id) if isinstance(e, ev.ReplicaStarted)]
        assert len(started) == 2
        assert "gpu_type:mi300x" in _node_resources(_actor(started[1].replica))
        poll_status(client, dep_id, "active")
        chat = f"{BASE}/{dep_id}/chat/completions"
        body = {"model": "m", "messages": [{"role": "user", "content": "still serving"}], "max_tokens": 8}
        answer = httpx.post(url + chat, json=body, headers={"Authorization": f"Bearer {active['api_key']}"})
        assert answer.status_code == 200, answer.text

        assert client.delete(f"{BASE}/{dep_id}").status_code == 200
        deadline = time.monotonic() + 60
        while (gone := client.get(f"{BASE}/{dep_id}")).status_code == 200 and gone.json()[
            "status"
        ] != "inactive":
            assert time.monotonic() < deadline
            time.sleep(0.3)
    with pytest.raises(ValueError, match="look up actor"):
        _actor(started[1].replica)


def test_a_lost_node_degrades_and_its_replica_is_placed_on_the_other(
    ray_simulated: Yard, ray_cluster: Any
) -> None:
    connect(ray_cluster.address)
    url = ray_simulated.urls[0]
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {ray_simulated.key}"}, timeout=60
    ) as client:
        created = client.post(BASE, json={"name": "spread", "model_id": "smollm2-135m", "replicas": 2})
        assert created.status_code == 201, created.text
        dep_id = created.json()["id"]
        poll_status(client, dep_id, "active", timeout=240)
        started = [e for e in _events(ray_simulated, dep_id) if isinstance(e, ev.ReplicaStarted)]
        on_worker = [e.replica for e in started if "gpu_type:mi300x" in _node_resources(_actor(e.replica))]
        assert len(on_worker) == 1, "the two replicas were not spread over the two nodes"
        try:
            ray_cluster.worker.kill()
            deadline = time.monotonic() + 240
            while True:
                history = _events(ray_simulated, dep_id)
                kinds = [type(e) for e in history]
                if ev.DeploymentRecovered in kinds or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            [lost] = [e for e in history if isinstance(e, ev.ReplicaLost)]
            assert lost.replica == on_worker[0]
            assert kinds.index(ev.DeploymentDegraded) > kinds.index(ev.ReplicaLost)
            assert kinds.index(ev.DeploymentRecovered) > kinds.index(ev.DeploymentDegraded)
            fresh = [e for e in history if isinstance(e, ev.ReplicaStarted)][-1]
            assert fresh.replica not in {e.replica for e in started}
            assert "gpu_type:h100" in _node_resources(_actor(fresh.replica))
            assert poll_status(client, dep_id, "active")["ready_replicas"] == 2
        finally:
            ray_cluster.worker.up()
        assert client.delete(f"{BASE}/{dep_id}").status_code == 200


@pytest.mark.slow
def test_the_five_steps_on_a_ray_placed_llamacpp_replica(ray_llamacpp: Yard, ray_cluster: Any) -> None:
    connect(ray_cluster.address)
    url = ray_llamacpp.urls[0]
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {ray_llamacpp.key}"}, timeout=120
    ) as client:
        created = client.post("/v1/provision", json={"model": "smollm2-135m", "capacity": 1})
        assert created.status_code == 201, created.text
        instance_id = created.json()["data"]["instance"]["id"]
        running = poll_until(client, instance_id, "running", timeout=300)
        [replica] = [e for e in _events(ray_llamacpp, instance_id) if isinstance(e, ev.ReplicaStarted)]
        # The replica runs where Ray put it, reached at the address its node reports, at the
        # node's priority (not a Ray worker's, which starved llama.cpp on a busy host).
        where, pid, _ = ray.get(_actor(replica.replica).where.remote(), timeout=60)
        assert where == replica.base_url
        assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0)
        key = running["api_key"]
        chat = httpx.post(
            f"{url}/v1/{instance_id}/chat",
            headers={"Authorization": f"Bearer {key}"},
            json={"message": "Say hello in one sentence."},
            timeout=120,
        )
        assert chat.status_code == 200, chat.text
        assert chat.json()["data"]["usage"]["completion_tokens"] > 0
        sdk = openai.OpenAI(base_url=running["openai_base_url"], api_key=key)
        answer = sdk.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Hi"}], max_tokens=8
        )
        assert answer.choices[0].message.content
        assert answer.usage is not None
        assert 0 < answer.usage.completion_tokens <= 8

        assert (
            client.delete(f"/v1/instances/{instance_id}").json()["data"]["instance"]["status"] == "destroying"
        )
        deadline = time.monotonic() + 60
        while client.get(f"/v1/instances/{instance_id}").status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.3)
    with pytest.raises(ValueError, match="look up actor"):
        _actor(replica.replica)
