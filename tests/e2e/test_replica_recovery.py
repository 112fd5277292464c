"""A replica that dies is replaced: degraded, then recovered, each an event."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from modelyard.adapters.eventstore.env import store_env
from modelyard.domain.deployments import events as ev
from modelyard.domain.shared import ids
from modelyard.domain.shared.store import Store
from modelyard.settings import load_settings

from .conftest import Yard
from .test_five_steps import poll_until

pytestmark = pytest.mark.e2e


def _replica_pid(port: str) -> int:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"modelyard.adapters.engines.replica" in args and port.encode() in args:
            return int(entry.name)
    raise AssertionError(f"no replica process on port {port}")


def test_a_killed_replica_is_replaced_with_degraded_and_recovered(simulated: Yard) -> None:
    headers = {"Authorization": f"Bearer {simulated.key}"}
    with httpx.Client(base_url=simulated.urls[0], headers=headers, timeout=60) as client:
        instance = client.post("/v1/provision", json={"model": "smollm2-135m", "capacity": 2}).json()
        instance_id = instance["data"]["instance"]["id"]
        running = poll_until(client, instance_id, "running")
        store = Store(env=store_env(load_settings(simulated.env)))
        try:
            started = [e for e in store.events.get(ids.parse_deployment_id(instance_id))
                       if isinstance(e, ev.ReplicaStarted)]  # fmt: skip
            assert len(started) == 2
            victim = _replica_pid(started[0].base_url.rsplit(":", 1)[1])
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while True:
                history = list(store.events.get(ids.parse_deployment_id(instance_id)))
                kinds = [type(e) for e in history]
                if ev.DeploymentRecovered in kinds or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
        finally:
            store.close()
        assert kinds.count(ev.ReplicaLost) == 1
        lost = kinds.index(ev.ReplicaLost)
        assert kinds.index(ev.DeploymentDegraded) > lost
        assert kinds.index(ev.DeploymentRecovered) > kinds.index(ev.DeploymentDegraded)
        assert kinds.count(ev.ReplicaStarted) == 3
        after = poll_until(client, instance_id, "running")
        assert after["capacity"] == running["capacity"] == 2
        chat = httpx.post(
            f"{simulated.urls[0]}/v1/{instance_id}/chat",
            headers={"Authorization": f"Bearer {running['api_key']}"},
            json={"message": "still serving"},
        )
        assert chat.json()["data"]["message"] == "still serving"
