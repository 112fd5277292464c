"""``modelyard low-balance`` as a user types it, against a running server (simulated engine):
the account's thresholds and a deployment's allowance set and read, bad input refused with
``CODE: message`` and exit 1, nothing written. The policy's steps are tested end to end in
tests/integration/webhooks/test_low_balance.py."""

from __future__ import annotations

import json

from .conftest import Yard
from .test_deployments_cli import _fields, _ok, _run


def test_the_low_balance_commands(simulated: Yard) -> None:
    simulated.await_key()
    assert json.loads(_ok(simulated, "low-balance", "get"))["source"] == "default"
    refused = _run(simulated, "low-balance", "set", "--notify-below", "1.00", "--degrade-below", "2.00")
    assert refused.returncode == 1
    assert "INVALID_AMOUNT: degrade_below (2.000000) is above notify_below (1.000000)" in refused.stderr
    negative = _run(simulated, "low-balance", "set", "--notify-below", "-1", "--degrade-below", "0")
    assert negative.returncode == 1
    assert "INVALID_AMOUNT: notify_below cannot be negative" in negative.stderr
    assert json.loads(_ok(simulated, "low-balance", "get"))["source"] == "default"

    policy = json.loads(
        _ok(simulated, "low-balance", "set", "--notify-below", "2.50", "--degrade-below", "1")
    )
    assert (policy["notify_below"], policy["degrade_below"], policy["source"]) == (
        "2.500000",
        "1.000000",
        "account",
    )
    assert json.loads(_ok(simulated, "low-balance", "get")) == policy

    dep = _fields(_ok(simulated, "deployments", "create", "smollm2-135m"))["id"]
    assert json.loads(_ok(simulated, "low-balance", "deployment", dep))["on_low_balance"] == "keep"
    allowed = json.loads(_ok(simulated, "low-balance", "deployment", dep, "--allow", "cheaper_preset"))
    assert (allowed["deployment_id"], allowed["on_low_balance"], allowed["preset_held_from"]) == (
        dep,
        "cheaper_preset",
        None,
    )
    bad = _run(simulated, "low-balance", "deployment", dep, "--allow", "pause")
    assert bad.returncode == 2
