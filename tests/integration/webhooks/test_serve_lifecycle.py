"""A real lifecycle through ``modelyard serve`` (simulated engine), subscribed with the CLI.

The deployment is provisioned over HTTP and subscribed with ``modelyard webhooks add``;
it goes active when its replicas answer, one replica is SIGKILLed (degraded, then
recovered when the reconciler replaces it), and it is scaled. The receiver verifies every
delivery with the ``standardwebhooks`` library and the ``X-AINative-Signature`` recipe:
each event once, in order.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.domain.shared import ids

from .conftest import Receiver

EVERY = [
    "deployment.active",
    "deployment.degraded",
    "deployment.sla_breach",
    "deployment.recovered",
    "deployment.scaled",
]

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MODELYARD = str(Path(sys.executable).with_name("modelyard"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """``modelyard serve`` and a funded management key."""

    def __init__(self, tmp_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "POSTGRES_"))}
        self.env = env | {
            "MODELYARD_DATA_DIR": str(tmp_path / "data"),
            "MODELYARD_ENGINE": "simulated",
            "MODELYARD_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            "MODELYARD_WEBHOOK_RETRY_SCHEDULE": "0.1,0.2,0.4",
        }
        self.cwd = tmp_path
        out = self.cli("accounts", "create", "--name", "hooks", "--credits", "5.00")
        lines = dict(line.split(": ", 1) for line in out.splitlines())
        self.key = lines["api_key"]
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.env |= {"MODELYARD_URL": self.url, "MODELYARD_API_KEY": self.key}
        log = (tmp_path / "serve.log").open("ab")
        self.proc = subprocess.Popen(
            [MODELYARD, "serve", "--port", str(port)], env=self.env, cwd=tmp_path, stdout=log, stderr=log
        )
        deadline = time.monotonic() + 90
        while True:
            assert self.proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve never came up"
            time.sleep(0.2)

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [MODELYARD, *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    yard = Served(tmp_path)
    yield yard
    yard.stop()


def _status(client: httpx.Client, instance_id: str, wanted: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        instance: dict[str, Any] = client.get(f"/v1/instances/{instance_id}").json()["data"]["instance"]
        if instance["status"] == wanted:
            return instance
        assert instance["status"] != "failed", instance
        assert time.monotonic() < deadline, instance
        time.sleep(0.3)


def _replica_pids(parent_pid: int) -> list[int]:
    """The replica processes ``parent_pid`` started (other servers on the machine have theirs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"modelyard.adapters.engines.replica" in args:
            found.append((int(entry.name), parent))
    return [pid for pid, parent in found if parent == parent_pid]


def test_active_degraded_recovered_scaled_each_once_in_order(served: Served, receiver: Receiver) -> None:
    headers = {"Authorization": f"Bearer {served.key}"}
    with httpx.Client(base_url=served.url, headers=headers, timeout=60) as client:
        created = client.post("/v1/provision", json={"model": "smollm2-135m", "capacity": 2})
        assert created.status_code == 201, created.text
        instance_id = created.json()["data"]["instance"]["id"]
        # Over HTTP at once: the replicas may answer before a CLI process has started.
        hooked = client.post(
            f"/v1/instances/{instance_id}/webhooks", json={"url": receiver.url, "events": EVERY}
        )
        assert hooked.status_code == 201, hooked.text
        shown = hooked.json()["data"]["webhook"]
        secret = shown["secret"]
        _status(client, instance_id, "running")
        # With the CLI: only the scaled events, to another path.
        out = served.cli(
            "webhooks", "add", instance_id, receiver.url + "/cli", "--event", "deployment.scaled"
        )
        cli_hook = dict(line.split(": ", 1) for line in out.splitlines())
        mine = _replica_pids(served.proc.pid)
        assert len(mine) == 2
        receiver.wait_for(1, timeout=30)
        os.kill(mine[0], signal.SIGKILL)
        receiver.wait_for(3, timeout=90)  # degraded, then recovered once replaced
        _status(client, instance_id, "running")
        scaled = client.post(f"/v1/instances/{instance_id}/scale", json={"capacity": 1})
        assert scaled.status_code == 200, scaled.text
        got = receiver.wait_for(5, timeout=90)
        time.sleep(1.0)  # a repeat would arrive now
    assert len(receiver.received) == 5
    (by_cli,) = [r for r in got if r.path == "/hooks/cli"]
    assert by_cli.verify(cli_hook["secret"])["type"] == "deployment.scaled"
    got = [r for r in got if r.path == "/hooks"]
    bodies = [r.verify(secret) for r in got]
    assert [b["type"] for b in bodies] == [
        "deployment.active",
        "deployment.degraded",
        "deployment.recovered",
        "deployment.scaled",
    ]
    assert {b["data"]["instance_id"] for b in bodies} == {instance_id}
    assert {b["data"]["deployment_id"] for b in bodies} == {
        ids.deployment_ref(ids.parse_deployment_id(instance_id))
    }
    assert bodies[3]["data"]["replicas"] == 1
    assert len({r.headers["webhook-id"] for r in got}) == 4
    webhook_id = shown["id"]
    listed = served.cli("webhooks", "deliveries", instance_id, webhook_id)
    assert listed.count("delivered") == 4
    assert cli_hook["id"] in served.cli("webhooks", "list", instance_id)
