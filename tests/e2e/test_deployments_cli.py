"""``modelyard deployments|scaling|sla|metrics`` as a user types them, against a running server
(simulated engine): the same exit codes and ``CODE: message`` refusals as the other agent commands."""

from __future__ import annotations

import json
import subprocess

import pytest

from .conftest import MODELYARD, Yard

pytestmark = pytest.mark.e2e


def _run(yard: Yard, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = yard.env | {"MODELYARD_URL": yard.urls[0], "MODELYARD_API_KEY": yard.key if key is None else key}
    return subprocess.run(
        [MODELYARD, *args], env=env, cwd=yard.cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _ok(yard: Yard, *args: str) -> str:
    done = _run(yard, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _fields(out: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


def test_the_deployment_commands(simulated: Yard) -> None:
    simulated.await_key()
    made = _fields(_ok(simulated, "deployments", "create", "llama3.1-8b", "--gpu-type", "h100", "--region",
                       "nyc2", "--preset", "cost", "--wait"))  # fmt: skip
    dep = made["id"]
    assert dep.startswith("dep_")
    assert made["status"] == "active"
    assert made["preset"] == "cost"
    assert made["api_key"].startswith("auxk_")
    assert dep in _ok(simulated, "deployments", "list")
    assert _fields(_ok(simulated, "deployments", "get", dep))["gpu_type"] == "h100"

    policy = json.loads(_ok(simulated, "scaling", "set", dep, "--max-replicas", "4", "--scale-to-zero",
                            "--idle-timeout-seconds", "120"))  # fmt: skip
    assert (policy["max_replicas"], policy["scale_to_zero"], policy["idle_timeout_seconds"]) == (4, True, 120)
    assert json.loads(_ok(simulated, "scaling", "get", dep))["max_replicas"] == 4
    targets = json.loads(
        _ok(simulated, "sla", "set", dep, "--ttft-target-ms", "500", "--concurrency-limit", "50")
    )
    assert (targets["ttft_target_ms"], targets["concurrency_limit"]) == (500, 50)
    assert json.loads(_ok(simulated, "sla", "get", dep))["breaches"] == []
    assert json.loads(_ok(simulated, "metrics", dep))["deployment_id"] == dep
    assert json.loads(_ok(simulated, "metrics", "--window-minutes", "10"))["window_minutes"] == 10

    refused = _run(simulated, "scaling", "set", dep, "--min-replicas", "5", "--max-replicas", "2")
    assert refused.returncode == 1
    assert "INVALID_REQUEST: min_replicas (5) is more than max_replicas (2)" in refused.stderr
    unplaceable = _run(simulated, "deployments", "create", "llama3.1-8b", "--region", "mars1")
    assert unplaceable.returncode == 1
    assert "INVALID_REQUEST: Unknown region 'mars1'" in unplaceable.stderr
    assert _run(simulated, "deployments", "create", "llama3.1-8b", "--replicas", "many").returncode == 2
    assert _run(simulated, "deployments", "list", key="").returncode == 2
    wrong = _run(simulated, "deployments", "list", key="auxen_live_nope")
    assert wrong.returncode == 1
    assert "INVALID_API_KEY" in wrong.stderr

    gone = _fields(_ok(simulated, "deployments", "delete", dep))
    assert gone["status"] == "teardown"
    again = _run(simulated, "deployments", "get", "dep_" + "0" * 32)
    assert again.returncode == 1
    assert "INSTANCE_NOT_FOUND" in again.stderr
