"""The low-balance policy end to end on the simulated engine: notify, degrade, restore, stop.

The API (Litestar's test client over the composition root) with the views, the reconciler
(real simulated replica processes), the webhook dispatcher and the balance guard running as
in ``modelyard serve``. The account's owner sets its policy and each deployment's allowance
over HTTP; the balance is driven down by charges recorded through the store (a metered
minute is a wall-clock minute) and up by a top-up. Each step is an event with its reason,
and a webhook verified with the ``standardwebhooks`` library.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from litestar.testing import TestClient

from modelyard.adapters.keygen import MANAGEMENT_PREFIX, new_secret
from modelyard.cli.compose import build_api, build_workers, opened_core, running
from modelyard.domain.accounts import aggregate as accounts
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.deployments import events as ev
from modelyard.domain.keys.aggregate import KeyKind
from modelyard.domain.keys.service import IssueKey
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import AccountNotFound
from modelyard.domain.shared.store import Store
from modelyard.settings import load_settings

from .conftest import Received, Receiver, Yard

pytestmark = [pytest.mark.e2e]
EVERY = [
    "deployment.active",
    "deployment.scaled",
    "deployment.preset_changed",
    "account.credits_low",
    "account.credits_exhausted",
]
WAIT_S = 60.0


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Yard]:
    """The API, views, reconciler (simulated replicas), webhooks and the balance guard."""
    settings = load_settings(
        {
            "MODELYARD_DATA_DIR": str(tmp_path / "data"),
            "MODELYARD_ENGINE": "simulated",
            "MODELYARD_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            "MODELYARD_WEBHOOK_RETRY_SCHEDULE": "0.05,0.1,0.2",
            "MODELYARD_BALANCE_GUARD_INTERVAL_S": "0.2",
        }
    )
    with ExitStack() as stack:
        core = stack.enter_context(opened_core(settings))
        stack.enter_context(
            running(build_workers(core, ["views", "reconciler", "webhooks", "balance_guard"]))
        )
        now = datetime.now(UTC)
        services = core.services
        account = services.accounts.open_account(OpenAccount(name="low", plan="free", at=now)).id
        services.accounts.add_credits(AddCredits(account_id=account, amount=5_000_000, at=now))
        secret, digest, display = new_secret(MANAGEMENT_PREFIX)
        services.keys.issue(
            IssueKey(account_id=account, kind=KeyKind.MANAGEMENT, secret_hash=digest, display=display, at=now)
        )
        client = stack.enter_context(TestClient(build_api(core)))
        yard = Yard(client=client, core=core, account=account, key=secret)
        deadline = time.monotonic() + 10
        while client.get("/v1/balance", headers=yard.auth).status_code == 401:
            assert time.monotonic() < deadline, "the key never reached the views"
            time.sleep(0.05)
        yield yard


def _until(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def _charge(store: Store, account: UUID, amount: int) -> None:
    """A charge recorded as the meter records one (for a minute of no deployment of the test's)."""
    acct = store.load(account, accounts.project_account, accounts.Account, AccountNotFound)
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    store.record(
        *accounts.charge_minute(
            acct, deployment_id=uuid4(), minute=minute, amount=amount, metered_version=1, at=datetime.now(UTC)
        )
    )


def _status(yard: Yard, dep: str) -> str:
    answer = yard.client.get(f"/api/v1/public/deployments/{dep}", headers=yard.auth)
    assert answer.status_code == 200, answer.text
    status: str = answer.json()["status"]
    return status


def _events(store: Store, dep: str) -> list[object]:
    return list(store.events.get(ids.parse_deployment_id(dep)))


def _replaced(store: Store, dep: str, preset: str) -> bool:
    """Whether, since the deployment last changed to ``preset``, a replica started and one
    started before was stopped as replaced, with nothing lost otherwise."""
    events = _events(store, dep)
    changed = max(i for i, e in enumerate(events) if isinstance(e, ev.PresetChanged) and e.preset == preset)
    after = events[changed + 1 :]
    started = [e for e in after if isinstance(e, ev.ReplicaStarted)]
    lost = [e for e in after if isinstance(e, ev.ReplicaLost)]
    return bool(started) and [e.reason for e in lost] == [f"replaced: the preset is now {preset}"]


def _of(receiver: Receiver, name: str, secrets: dict[str, str]) -> list[dict[str, Any]]:
    """The verified bodies of the deliveries of ``name`` (each checked with its subscription's secret)."""
    found = []
    for received in receiver.delivered():
        if received.json["type"] == name:
            found.append(_verified(received, secrets))
    return found


def _verified(received: Received, secrets: dict[str, str]) -> dict[str, Any]:
    errors = []
    for secret in secrets.values():
        try:
            return received.verify(secret)
        except Exception as exc:
            errors.append(exc)
    raise AssertionError(f"no subscription's secret verifies {received.json}: {errors}")


def test_notify_degrade_restore_then_stop_each_an_event_and_a_webhook(
    guarded: Yard, receiver: Receiver
) -> None:
    yard, store = guarded, guarded.core.store
    auth = yard.auth

    # The policy: refused as documented, nothing written; then set and read back.
    for body, match in [
        ({"notify_below": "-1", "degrade_below": "0"}, "negative"),
        ({"notify_below": "lots", "degrade_below": "0"}, "not an amount"),
        ({"notify_below": 4, "degrade_below": "0"}, "string"),
        ({"notify_below": "1.00", "degrade_below": "2.00"}, "at most notify_below"),
        ({"notify_below": "2000000000", "degrade_below": "0"}, "most an account can hold"),
    ]:
        refused = yard.client.put("/v1/account/low-balance-policy", json=body, headers=auth)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "INVALID_AMOUNT"
        assert match in refused.json()["error"]["message"]
    default = yard.client.get("/v1/account/low-balance-policy", headers=auth).json()["data"]
    assert (default["source"], default["degrade_below"]) == ("default", "0.000000")
    put = yard.client.put(
        "/v1/account/low-balance-policy", json={"notify_below": "4.00", "degrade_below": "3.00"}, headers=auth
    )
    assert put.status_code == 200, put.text
    assert put.json()["data"] == {
        "account_id": ids.public_id(ids.ACCOUNT, yard.account),
        "notify_below": "4.000000",
        "degrade_below": "3.000000",
        "source": "account",
    }

    # Two deployments, one opted in to each step; both subscribed.
    deps = {}
    for name in ("sleeper", "cheap"):
        created = yard.client.post(
            "/api/v1/public/deployments", json={"name": name, "model_id": "smollm2-135m"}, headers=auth
        )
        assert created.status_code == 201, created.text
        deps[name] = created.json()["id"]
    sleeper, cheap = deps["sleeper"], deps["cheap"]
    bad = yard.client.patch(
        f"/api/v1/public/deployments/{sleeper}/low-balance", json={"on_low_balance": "pause"}, headers=auth
    )
    assert bad.status_code == 400, bad.text
    for dep, allows in ((sleeper, "scale_to_zero"), (cheap, "cheaper_preset")):
        set_ = yard.client.patch(
            f"/api/v1/public/deployments/{dep}/low-balance", json={"on_low_balance": allows}, headers=auth
        )
        assert set_.status_code == 200, set_.text
    secrets = {}
    for dep in (sleeper, cheap):
        hook = yard.client.post(
            f"/api/v1/public/deployments/{dep}/webhooks",
            json={"url": receiver.url, "events": EVERY},
            headers=auth,
        )
        assert hook.status_code == 201, hook.text
        secrets[dep] = hook.json()["data"]["webhook"]["secret"]
    for dep in (sleeper, cheap):
        _until(lambda dep=dep: _status(yard, dep) == "active", f"{dep} active")  # type: ignore[misc]
    _until(lambda: len(_of(receiver, "deployment.active", secrets)) == 2, "both deployment.active")

    # 5.00 -> 3.50: below notify_below, above degrade_below: a warning, nothing moved.
    _charge(store, yard.account, 1_500_000)
    low = _until(lambda: _of(receiver, "account.credits_low", secrets), "account.credits_low")
    assert {(n["data"]["balance_usd"], n["data"]["threshold_usd"]) for n in low} == {("3.500000", "4.000000")}
    time.sleep(0.6)  # three guard passes
    assert _status(yard, sleeper) == "active"
    assert not _of(receiver, "deployment.preset_changed", secrets)

    # 3.50 -> 2.50: below degrade_below: the sleeper goes to zero, the other to the cost preset.
    _charge(store, yard.account, 1_000_000)
    _until(lambda: _status(yard, sleeper) == "scaled_to_zero", "the sleeper scaled to zero")
    scaled = _until(
        lambda: [n for n in _of(receiver, "deployment.scaled", secrets) if n["data"].get("for_balance")],
        "deployment.scaled for balance",
    )
    assert scaled[0]["data"]["deployment_id"] == sleeper
    assert scaled[0]["data"]["reason"] == "low balance: 2.500000 USD is below degrade_below 3.000000 USD"
    moved = _until(lambda: _of(receiver, "deployment.preset_changed", secrets), "deployment.preset_changed")
    assert moved[0]["data"]["deployment_id"] == cheap
    assert (moved[0]["data"]["preset"], moved[0]["data"]["restores_to"]) == ("cost", "balanced")
    shown = yard.client.get(f"/api/v1/public/deployments/{cheap}/low-balance", headers=auth).json()
    assert shown["reason"] == "low balance: 2.500000 USD is below degrade_below 3.000000 USD"
    slept = yard.client.get(f"/api/v1/public/deployments/{sleeper}/low-balance", headers=auth).json()
    assert (slept["scaled_to_zero_for_balance"], slept["reason"]) == (True, shown["reason"])
    assert (shown["preset"], shown["preset_held_from"], shown["on_low_balance"]) == (
        "cost",
        "balanced",
        "cheaper_preset",
    )
    _until(
        lambda: (
            yard.client.get(f"/api/v1/public/deployments/{cheap}", headers=auth).json()["preset"] == "cost"
        ),
        "the deployment shows the cost preset",
    )
    # Its replica is replaced by one started under the cost preset; it serves throughout.
    _until(lambda: _replaced(store, cheap, "cost"), "the replica replaced under the cost preset")
    assert _status(yard, cheap) == "active"
    # A request does not wake a deployment scaled to zero for its balance.
    refused = yard.client.post(
        f"/api/v1/public/deployments/{sleeper}/chat/completions",
        json={"model": "smollm2-135m", "messages": [{"role": "user", "content": "hi"}]},
        headers=auth,
    )
    assert refused.status_code == 402, refused.text
    # Each step once: the guard keeps passing, nothing more is recorded.
    time.sleep(0.6)
    sleeper_events = [type(e).__name__ for e in _events(store, sleeper)]
    cheap_events = [type(e).__name__ for e in _events(store, cheap)]
    assert sleeper_events.count("ScaledToZero") == 1
    assert cheap_events.count("PresetChanged") == 1

    # A top-up to 4.50: both moved back, each an event with its reason and a webhook.
    yard.core.services.accounts.add_credits(
        AddCredits(account_id=yard.account, amount=2_000_000, at=datetime.now(UTC))
    )
    _until(lambda: _status(yard, sleeper) == "active", "the sleeper woken and active again")
    woken = _until(
        lambda: [n for n in _of(receiver, "deployment.scaled", secrets) if n["data"].get("waking")], "waking"
    )
    assert woken[0]["data"]["reason"] == "credit restored: balance 4.500000 USD, degrade_below 3.000000 USD"
    _until(lambda: len(_of(receiver, "deployment.active", secrets)) == 3, "deployment.active after the wake")
    back = _until(
        lambda: (
            len(_of(receiver, "deployment.preset_changed", secrets)) == 2
            and _of(receiver, "deployment.preset_changed", secrets)
        ),
        "the preset restored",
    )
    assert (back[1]["data"]["preset"], "restores_to" in back[1]["data"]) == ("balanced", False)
    _until(lambda: _replaced(store, cheap, "balanced"), "the replica replaced under the balanced preset")
    wake = [e for e in _events(store, sleeper) if isinstance(e, ev.WakeRequested)]
    restore = [e for e in _events(store, cheap) if isinstance(e, ev.PresetChanged)]
    assert [w.reason for w in wake] == [woken[0]["data"]["reason"]]
    assert [r.preset for r in restore] == ["cost", "balanced"]

    # At zero, and only then, deployments are stopped (the exhaustion path), with its webhook.
    _charge(store, yard.account, 4_500_000)
    exhausted = _until(lambda: _of(receiver, "account.credits_exhausted", secrets), "credits_exhausted")
    stopped = {d["deployment_id"] for d in exhausted[0]["data"]["stopped_deployments"]}
    assert stopped == {sleeper, cheap}
    for dep in (sleeper, cheap):
        _until(lambda dep=dep: _status(yard, dep) == "inactive", f"{dep} stopped")  # type: ignore[misc]
    # Every delivery verified with its subscription's secret.
    for received in receiver.delivered():
        _verified(received, secrets)
