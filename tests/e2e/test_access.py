"""Access over HTTP, as two accounts, an organisation and an operator use it (simulated engine).

One ``modelyard serve`` for the module; account A owns deployments and keys, account B
tries every route against them, an operator tops up. Plan limits are raised here so the
flows are not throttled; ``test_plan_limits.py`` tests the limits themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import MODELYARD, Yard, free_port

pytestmark = pytest.mark.e2e
PUBLIC = "/api/v1/public"
CHAT = {"model": "x", "messages": [{"role": "user", "content": "Name a planet."}], "max_tokens": 8}


class Account:
    """One account on the yard: its ids, its management key and a client that sends it."""

    def __init__(self, yard: Yard, name: str, usd: str, plan: str = "free") -> None:
        out = yard.cli("accounts", "create", "--name", name, "--credits", usd, "--plan", plan).stdout
        lines = dict(line.split(": ", 1) for line in out.splitlines())
        self.id, self.key, self.key_id = lines["account_id"], lines["api_key"], lines["key_id"]
        self.http = httpx.Client(
            base_url=yard.urls[0], headers={"Authorization": f"Bearer {self.key}"}, timeout=60
        )


@pytest.fixture(scope="module")
def yard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Yard]:
    tmp: Path = tmp_path_factory.mktemp("access")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "POSTGRES_"))}
    env |= {
        "MODELYARD_DATA_DIR": str(tmp / "data"),
        "MODELYARD_ENGINE": "simulated",
        "MODELYARD_PLAN_LIMITS": "free=100000/100000000,professional=100000/100000000",
    }
    yard = Yard(env=env, cwd=tmp, urls=[])
    # The CLI opens the store before the server does: the accounts' first write makes it.
    yard.fund("1.00")
    yard.start("serve", port=free_port())
    yield yard
    yard.stop()


@pytest.fixture(scope="module")
def a(yard: Yard) -> Account:
    return Account(yard, "alice", "5.00")


@pytest.fixture(scope="module")
def b(yard: Yard) -> Account:
    return Account(yard, "bob", "5.00")


@pytest.fixture(scope="module")
def operator_key(yard: Yard) -> str:
    out = yard.cli("keys", "create-operator", "--name", "finance").stdout
    return dict(line.split(": ", 1) for line in out.splitlines())["api_key"]


def running(account: Account, model: str = "smollm2-135m") -> str:
    """A running deployment of ``account`` (its ``inst_`` id)."""
    made = account.http.post("/v1/provision", json={"model": model})
    assert made.status_code == 201, made.text
    instance_id = str(made.json()["data"]["instance"]["id"])
    eventually(
        lambda: account.http.get(f"/v1/instances/{instance_id}").json()["data"]["instance"]["status"],
        "running",
    )
    return instance_id


def eventually(probe: Callable[[], Any], expected: Any, timeout: float = 30) -> None:
    """Wait until ``probe()`` answers ``expected`` (keys and views are cached for seconds)."""
    deadline = time.monotonic() + timeout
    while (got := probe()) != expected:
        assert time.monotonic() < deadline, f"still {got!r}, expected {expected!r}"
        time.sleep(0.2)


def chat_status(yard: Yard, key: str, instance_id: str) -> int:
    answer = httpx.post(
        f"{yard.urls[0]}/v1/{instance_id}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json=CHAT,
        timeout=60,
    )
    return answer.status_code


def code(response: httpx.Response) -> str:
    body = response.json()
    return str(body["error"]["code"])


# --- 1. the catalog and plans -------------------------------------------------------------


def test_the_catalog_lists_every_model_with_what_serves_it_and_the_plan_decides(
    a: Account, yard: Yard
) -> None:
    catalog = a.http.get(f"{PUBLIC}/models")
    assert catalog.status_code == 200, catalog.text
    assert "X-RateLimit-Limit" in catalog.headers
    models = {m["id"]: m for m in catalog.json()["data"]}
    smol = models["smollm2-135m"]
    assert smol["context_window"] == 2048
    assert smol["tier"] == "free"
    assert smol["capabilities"] == ["chat", "completions"]
    assert smol["pricing"]["dedicated_per_hour_usd"] == "0.150000"
    assert smol["hardware"]["engine"] == "simulated"
    assert models["bge-m3"]["capabilities"] == ["embeddings"]
    assert models["deepseek-r1"]["tier"] == "enterprise"
    available = a.http.get(f"{PUBLIC}/models/available").json()
    assert available["plan"] == "free"
    reach = {m["id"] for m in available["data"]}
    assert "smollm2-135m" in reach
    assert {"qwen2.5-14b-instruct", "gemma-2-27b-it", "deepseek-r1", "bge-m3"}.isdisjoint(reach)
    assert set(models) > reach

    missing = a.http.get(f"{PUBLIC}/models/no-such-model")
    assert (missing.status_code, code(missing)) == (404, "MODEL_NOT_FOUND")
    one = a.http.get(f"{PUBLIC}/models/smollm2-135m").json()
    assert one["id"] == "smollm2-135m"

    above = a.http.post("/v1/provision", json={"model": "qwen2.5-14b-instruct"})
    assert (above.status_code, code(above)) == (403, "PLAN_UPGRADE_REQUIRED")
    assert "basic" in above.json()["error"]["message"]
    assert a.http.get("/v1/instances").json()["data"]["count"] == 0

    pro = Account(yard, "pro", "50.00", plan="professional")
    assert "qwen2.5-14b-instruct" in {
        m["id"] for m in pro.http.get(f"{PUBLIC}/models/available").json()["data"]
    }
    allowed = pro.http.post("/v1/provision", json={"model": "qwen2.5-14b-instruct"})
    assert allowed.status_code == 201, allowed.text
    pro.http.delete(f"/v1/instances/{allowed.json()['data']['instance']['id']}")


# --- 2. keys ------------------------------------------------------------------------------


def test_keys_are_listed_created_once_shown_and_revoked(a: Account, b: Account, yard: Yard) -> None:
    listed = a.http.get(f"{PUBLIC}/keys").json()["data"]
    mine = next(k for k in listed if k["id"] == a.key_id)
    assert mine["kind"] == "management"
    assert mine["last_used_at"] is not None
    assert all(k["key"] is None for k in listed)
    assert a.key not in a.http.get(f"{PUBLIC}/keys").text

    created = a.http.post(
        f"{PUBLIC}/keys", json={"kind": "management", "name": "ci"}, headers={"Idempotency-Key": "ci-1"}
    )
    assert created.status_code == 201, created.text
    second = created.json()
    assert second["key"].startswith("auxen_live_")
    assert second["name"] == "ci"
    replay = a.http.post(
        f"{PUBLIC}/keys", json={"kind": "management", "name": "ci"}, headers={"Idempotency-Key": "ci-1"}
    )
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == second["id"]
    assert replay.json()["key"] is None
    assert len([k for k in a.http.get(f"{PUBLIC}/keys").json()["data"] if k["name"] == "ci"]) == 1

    other = httpx.Client(base_url=yard.urls[0], headers={"Authorization": f"Bearer {second['key']}"})
    assert other.get("/v1/balance").status_code == 200
    shown = a.http.get(f"{PUBLIC}/keys/{second['id']}").json()
    assert shown["last_used_at"] is not None

    # Another account sees nothing of it, and cannot revoke it.
    for attempt in (
        b.http.get(f"{PUBLIC}/keys/{second['id']}"),
        b.http.delete(f"{PUBLIC}/keys/{second['id']}"),
    ):
        assert (attempt.status_code, code(attempt)) == (404, "KEY_NOT_FOUND")
    assert second["id"] not in {k["id"] for k in b.http.get(f"{PUBLIC}/keys").json()["data"]}

    itself = other.delete(f"{PUBLIC}/keys/{second['id']}")
    assert itself.status_code == 400
    revoked = a.http.delete(f"{PUBLIC}/keys/{second['id']}")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked"] is True
    eventually(lambda: other.get("/v1/balance").status_code, 401)
    again = a.http.delete(f"{PUBLIC}/keys/{second['id']}")
    assert again.status_code == 400

    for bad in (
        {"kind": "root"},
        {"kind": "scoped", "role": "admin"},
        {"kind": "management", "deployments": ["dep_x"]},
        {"kind": "scoped", "surprise": 1},
        {"kind": "scoped", "name": "n" * 201},
    ):
        refused = a.http.post(f"{PUBLIC}/keys", json=bad)
        assert refused.status_code == 400, (bad, refused.text)
    malformed = a.http.get(f"{PUBLIC}/keys/not-a-key")
    assert (malformed.status_code, code(malformed)) == (404, "KEY_NOT_FOUND")


# --- 3. per-deployment grants -------------------------------------------------------------


def test_a_scoped_key_reaches_only_what_it_was_granted(a: Account, b: Account, yard: Yard) -> None:
    instance_id = running(a)
    dep_id = "dep_" + instance_id.removeprefix("inst_")
    scoped = a.http.post(f"{PUBLIC}/keys", json={"kind": "scoped", "name": "tenant-1"}).json()
    secret, key_id = scoped["key"], scoped["id"]
    assert secret.startswith("auxs_")
    assert chat_status(yard, secret, instance_id) == 403

    granted = a.http.post(
        f"{PUBLIC}/deployments/{dep_id}/permissions", json={"api_key_id": key_id, "role": "inference"}
    )
    assert granted.status_code == 201, granted.text
    assert granted.json() == {"deployment_id": dep_id, "api_key_id": key_id, "role": "inference"}
    eventually(lambda: chat_status(yard, secret, instance_id), 200)
    listed = a.http.get(f"/v1/instances/{instance_id}/permissions").json()["data"]
    assert [p["api_key_id"] for p in listed] == [key_id]

    # A scoped key never manages, and MCP takes only a management key.
    assert (
        httpx.get(f"{yard.urls[0]}/v1/instances", headers={"Authorization": f"Bearer {secret}"}).status_code
        == 401
    )
    assert (
        httpx.get(f"{yard.urls[0]}{PUBLIC}/keys", headers={"Authorization": f"Bearer {secret}"}).status_code
        == 401
    )
    mcp = httpx.post(f"{yard.urls[0]}/mcp/", headers={"Authorization": f"Bearer {secret}"}, json={})
    assert mcp.status_code == 401

    # A second deployment of the same account is not granted: forbidden, not found elsewhere.
    second = running(a)
    assert chat_status(yard, secret, second) == 403

    revoked = a.http.delete(f"/v1/instances/{instance_id}/permissions/{key_id}")
    assert revoked.status_code == 200, revoked.text
    eventually(lambda: chat_status(yard, secret, instance_id), 403)
    gone = a.http.delete(f"/v1/instances/{instance_id}/permissions/{key_id}")
    assert (gone.status_code, code(gone)) == (404, "KEY_NOT_FOUND")

    # A key created scoped to a set of deployments reaches exactly those.
    preset = a.http.post(f"{PUBLIC}/keys", json={"kind": "scoped", "deployments": [second]}).json()
    assert [p["deployment_id"] for p in preset["permissions"]] == ["dep_" + second.removeprefix("inst_")]
    eventually(lambda: chat_status(yard, preset["key"], second), 200)
    assert chat_status(yard, preset["key"], instance_id) == 403

    # Revoking the key ends everything it reached.
    a.http.delete(f"{PUBLIC}/keys/{preset['id']}")
    eventually(lambda: chat_status(yard, preset["key"], second), 401)

    # Bad grants: unknown role, a management key, a revoked key, a malformed key id.
    for body in (
        {"api_key_id": key_id, "role": "admin"},
        {"api_key_id": a.key_id, "role": "inference"},
        {"api_key_id": preset["id"], "role": "inference"},
        {"api_key_id": key_id, "extra": 1},
    ):
        refused = a.http.post(f"{PUBLIC}/deployments/{dep_id}/permissions", json=body)
        assert refused.status_code == 400, (body, refused.text)
    unknown = a.http.post(
        f"{PUBLIC}/deployments/{dep_id}/permissions", json={"api_key_id": "key_" + "0" * 32}
    )
    assert (unknown.status_code, code(unknown)) == (404, "KEY_NOT_FOUND")


def test_a_second_account_is_refused_on_every_route_without_learning_anything(
    a: Account, b: Account, yard: Yard
) -> None:
    instance_id = running(a)
    dep_id = "dep_" + instance_id.removeprefix("inst_")
    nowhere = "dep_" + "0" * 32
    a_scoped = a.http.post(f"{PUBLIC}/keys", json={"kind": "scoped", "deployments": [dep_id]}).json()
    b_scoped = b.http.post(f"{PUBLIC}/keys", json={"kind": "scoped"}).json()
    b_instance = running(b)
    grant = {"api_key_id": b_scoped["id"], "role": "inference"}
    routes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", f"/v1/instances/{instance_id}", None),
        ("DELETE", f"/v1/instances/{instance_id}", None),
        ("POST", f"/v1/instances/{instance_id}/scale", {"capacity": 2}),
        ("GET", f"/v1/instances/{instance_id}/permissions", None),
        ("POST", f"/v1/instances/{instance_id}/permissions", grant),
        ("GET", f"{PUBLIC}/deployments/{dep_id}/permissions", None),
        ("POST", f"{PUBLIC}/deployments/{dep_id}/permissions", grant),
        ("DELETE", f"{PUBLIC}/deployments/{dep_id}/permissions/{a_scoped['id']}", None),
        ("GET", f"{PUBLIC}/keys/{a_scoped['id']}", None),
        ("DELETE", f"{PUBLIC}/keys/{a_scoped['id']}", None),
        ("GET", f"{PUBLIC}/keys/{a.key_id}", None),
        ("POST", f"{PUBLIC}/keys", {"kind": "scoped", "deployments": [dep_id]}),
        ("POST", f"/v1/{instance_id}/v1/chat/completions", CHAT),
        ("POST", f"/v1/{instance_id}/chat", {"message": "hi"}),
    ]
    for method, path, body in routes:
        answer = b.http.request(method, path, json=body)
        assert answer.status_code in (401, 403, 404), (method, path, answer.status_code, answer.text)
        # The same request about a deployment that does not exist gets the same answer.
        twin = b.http.request(
            method, path.replace(dep_id, nowhere).replace(instance_id, "inst_" + "0" * 32), json=body
        )
        if a_scoped["id"] not in path and a.key_id not in path:
            assert (twin.status_code, code(twin)) == (answer.status_code, code(answer)), (method, path)
    # B's own scoped key granted B's own deployment cannot be pointed at A's by B.
    mine = b.http.post(f"/v1/instances/{b_instance}/permissions", json={"api_key_id": a_scoped["id"]})
    assert (mine.status_code, code(mine)) == (404, "KEY_NOT_FOUND")
    assert chat_status(yard, b_scoped["key"], instance_id) == 403
    assert chat_status(yard, b_scoped["key"], "inst_" + "0" * 32) == 403
    # A's own deployment still runs, A's keys still work.
    assert a.http.get(f"/v1/instances/{instance_id}").json()["data"]["instance"]["status"] == "running"
    assert chat_status(yard, a_scoped["key"], instance_id) == 200


# --- 5. credits and usage -----------------------------------------------------------------


def test_an_operator_tops_up_once_per_idempotency_key(yard: Yard, operator_key: str) -> None:
    # An account of its own, with nothing running: its balance moves only by top-ups.
    a = Account(yard, "erin", "1.00")
    operator = httpx.Client(base_url=yard.urls[0], headers={"Authorization": f"Bearer {operator_key}"})

    def balance() -> str:
        return str(a.http.get("/v1/balance").json()["data"]["balance_usd"])

    before = balance()
    body = {"account_id": a.id, "amount_usd": "2.50"}
    first = operator.post(f"{PUBLIC}/credits", json=body, headers={"Idempotency-Key": "topup-1"})
    assert first.status_code == 201, first.text
    retry = operator.post(f"{PUBLIC}/credits", json=body, headers={"Idempotency-Key": "topup-1"})
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    after = balance()
    assert int(after.replace(".", "")) - int(before.replace(".", "")) == 2_500_000

    for amount in ("-1", "0", "abc", "1e30", -5, 0, "NaN", "0.0000001"):
        refused = operator.post(
            f"{PUBLIC}/credits",
            json={"account_id": a.id, "amount_usd": amount},
            headers={"Idempotency-Key": f"x{amount}"},
        )
        assert (refused.status_code, code(refused)) == (400, "INVALID_AMOUNT"), (amount, refused.text)
    for bad in (
        {"account_id": a.id, "amount_usd": True},
        {"account_id": a.id},
        {"account_id": a.id, "amount_usd": "1", "x": 1},
    ):
        refused = operator.post(f"{PUBLIC}/credits", json=bad, headers={"Idempotency-Key": "y"})
        assert (refused.status_code, code(refused)) == (400, "INVALID_REQUEST"), (bad, refused.text)
    no_key = operator.post(f"{PUBLIC}/credits", json=body)
    assert (no_key.status_code, code(no_key)) == (400, "INVALID_REQUEST")
    nobody = operator.post(
        f"{PUBLIC}/credits",
        json={"account_id": "acct_" + "0" * 32, "amount_usd": "1"},
        headers={"Idempotency-Key": "z"},
    )
    assert (nobody.status_code, code(nobody)) == (404, "ACCOUNT_NOT_FOUND")
    not_operator = a.http.post(f"{PUBLIC}/credits", json=body, headers={"Idempotency-Key": "self-1"})
    assert (not_operator.status_code, code(not_operator)) == (401, "INVALID_API_KEY")
    assert balance() == after

    # The CLI's top-up takes an idempotency key too: run twice, credited once.
    yard.cli("credits", "add", a.id, "1.00", "--idempotency-key", "cli-1")
    twice = yard.cli("credits", "add", a.id, "1.00", "--idempotency-key", "cli-1")
    assert "nothing added" in twice.stderr
    assert int(balance().replace(".", "")) - int(after.replace(".", "")) == 1_000_000


def test_the_usage_export_has_each_deployment_minute_in_json_and_csv(
    a: Account, b: Account, yard: Yard
) -> None:
    instance_id = running(a)
    key = a.http.post(f"{PUBLIC}/keys", json={"kind": "scoped", "deployments": [instance_id]}).json()["key"]
    eventually(lambda: chat_status(yard, key, instance_id), 200)
    dep_id = "dep_" + instance_id.removeprefix("inst_")

    def rows() -> list[dict[str, Any]]:
        data = a.http.get(f"{PUBLIC}/usage/export").json()["data"]
        return [r for r in data if r["deployment_id"] == dep_id and r["requests"] > 0]

    eventually(lambda: bool(rows()), True)
    row = rows()[0]
    assert row["prompt_tokens"] > 0
    assert len(row["minute"]) == len("2026-11-29T15:31")
    csv_answer = a.http.get(f"{PUBLIC}/usage/export", params={"format": "csv"})
    assert csv_answer.headers["content-type"].startswith("text/csv")
    lines = csv_answer.text.splitlines()
    assert lines[0] == "deployment_id,minute,requests,prompt_tokens,completion_tokens,charged_usd"
    assert any(line.startswith(f"{dep_id},{row['minute']},") for line in lines[1:])
    assert dep_id not in b.http.get(f"{PUBLIC}/usage/export").text
    bad = a.http.get(f"{PUBLIC}/usage/export", params={"format": "xml"})
    assert bad.status_code == 400
    ledger = a.http.get(f"{PUBLIC}/usage/ledger").json()
    assert ledger["account_id"] == a.id
    assert ledger["data"][0]["kind"] == "credit"
    assert ledger["data"][-1]["balance_after_usd"] == ledger["balance_usd"]
    assert a.id not in b.http.get(f"{PUBLIC}/usage/ledger").text


# --- 6. organisations ---------------------------------------------------------------------


def test_an_organisation_owns_deployments_and_credit_and_its_route_checks_membership(
    a: Account, b: Account, yard: Yard, operator_key: str
) -> None:
    carol = Account(yard, "carol", "1.00")
    org = a.http.post(f"{PUBLIC}/orgs", json={"name": "acme"})
    assert org.status_code == 201, org.text
    org_id = org.json()["id"]
    assert org.json()["members"][0]["account_id"] == a.id
    operator = httpx.Client(base_url=yard.urls[0], headers={"Authorization": f"Bearer {operator_key}"})
    credited = operator.post(
        f"{PUBLIC}/credits",
        json={"account_id": org_id, "amount_usd": "3"},
        headers={"Idempotency-Key": "org-1"},
    )
    assert credited.status_code == 201, credited.text
    assert a.http.get(f"{PUBLIC}/orgs/{org_id}").json()["balance_usd"] == "3.000000"

    made = a.http.post(f"{PUBLIC}/orgs/{org_id}/deployments", json={"model_id": "smollm2-135m"})
    assert made.status_code == 201, made.text
    dep_id = made.json()["id"]
    eventually(lambda: a.http.get(f"{PUBLIC}/orgs/{org_id}/deployments/{dep_id}").json()["status"], "active")
    chat_path = f"{PUBLIC}/orgs/{org_id}/deployments/{dep_id}/chat/completions"
    answer = a.http.post(chat_path, json=CHAT)
    assert answer.status_code == 200, answer.text
    assert answer.json()["object"] == "chat.completion"

    # Not a member: the organisation does not exist for B.
    refused = b.http.post(chat_path, json=CHAT)
    assert (refused.status_code, refused.json()["error"]["code"]) == (404, "ORG_NOT_FOUND")
    assert b.http.get(f"{PUBLIC}/orgs/{org_id}").status_code == 404

    added = a.http.post(
        f"{PUBLIC}/orgs/{org_id}/members", json={"account_id": b.id, "permissions": ["deployment:invoke"]}
    )
    assert added.status_code == 201, added.text
    eventually(lambda: b.http.post(chat_path, json=CHAT).status_code, 200)
    assert org_id in {o["id"] for o in b.http.get(f"{PUBLIC}/orgs").json()["data"]}
    # Invoke is not manage, nor admin.
    assert (
        b.http.post(f"{PUBLIC}/orgs/{org_id}/deployments", json={"model_id": "smollm2-135m"}).status_code
        == 403
    )
    assert (
        b.http.post(
            f"{PUBLIC}/orgs/{org_id}/members",
            json={"account_id": carol.id, "permissions": ["deployment:invoke"]},
        ).status_code
        == 403
    )
    # The org route reaches only the org's deployments: not A's own.
    personal = running(a)
    outside = a.http.post(f"{PUBLIC}/orgs/{org_id}/deployments/{personal}/chat/completions", json=CHAT)
    assert (outside.status_code, outside.json()["error"]["code"]) == (404, "INSTANCE_NOT_FOUND")
    # A member without invoke is forbidden.
    a.http.post(
        f"{PUBLIC}/orgs/{org_id}/members", json={"account_id": carol.id, "permissions": ["deployment:manage"]}
    )
    no_invoke = carol.http.post(chat_path, json=CHAT)
    assert (no_invoke.status_code, no_invoke.json()["error"]["code"]) == (403, "FORBIDDEN")
    # A scoped key does not act for its account in an organisation.
    scoped = a.http.post(f"{PUBLIC}/keys", json={"kind": "scoped"}).json()["key"]
    assert (
        httpx.post(
            f"{yard.urls[0]}{chat_path}", headers={"Authorization": f"Bearer {scoped}"}, json=CHAT
        ).status_code
        == 401
    )

    removed = a.http.delete(f"{PUBLIC}/orgs/{org_id}/members/{b.id}")
    assert removed.status_code == 200, removed.text
    started = time.monotonic()
    eventually(lambda: b.http.post(chat_path, json=CHAT).status_code, 404, timeout=5)
    assert time.monotonic() - started < 5

    # Bad input: a member who is no account, an unknown permission, removing a non-member,
    # the last admin.
    nobody = a.http.post(
        f"{PUBLIC}/orgs/{org_id}/members",
        json={"account_id": "acct_" + "0" * 32, "permissions": ["deployment:invoke"]},
    )
    assert (nobody.status_code, nobody.json()["error"]["code"]) == (404, "ACCOUNT_NOT_FOUND")
    unknown = a.http.post(
        f"{PUBLIC}/orgs/{org_id}/members", json={"account_id": b.id, "permissions": ["root"]}
    )
    assert unknown.status_code == 400
    assert a.http.delete(f"{PUBLIC}/orgs/{org_id}/members/{b.id}").status_code == 404
    assert a.http.delete(f"{PUBLIC}/orgs/{org_id}/members/{a.id}").status_code == 400
    # The usage the org's deployment served is the org's.
    eventually(
        lambda: any(
            r["deployment_id"] == dep_id for r in a.http.get(f"{PUBLIC}/orgs/{org_id}/usage").json()["data"]
        ),
        True,
    )
    assert b.http.get(f"{PUBLIC}/orgs/{org_id}/usage").status_code == 404


def test_the_cli_manages_keys_grants_and_organisations_over_http(b: Account, yard: Yard) -> None:
    a = Account(yard, "dora", "5.00")
    env = yard.env | {"MODELYARD_URL": yard.urls[0], "MODELYARD_API_KEY": a.key}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [MODELYARD, *args],
            env=env,
            cwd=yard.cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    instance_id = running(a)
    created = dict(
        line.split(": ", 1)
        for line in run(
            "api-keys", "create", "--name", "cli", "--deployment", instance_id
        ).stdout.splitlines()
    )
    key_id, secret = created["key_id"], created["api_key"]
    eventually(lambda: chat_status(yard, secret, instance_id), 200)
    listing = run("api-keys", "list").stdout
    assert key_id in listing
    assert secret not in listing
    run("permissions", "revoke", instance_id, key_id)
    eventually(lambda: chat_status(yard, secret, instance_id), 403)
    run("permissions", "grant", instance_id, key_id)
    eventually(lambda: chat_status(yard, secret, instance_id), 200)
    run("api-keys", "revoke", key_id)
    eventually(lambda: chat_status(yard, secret, instance_id), 401)

    available = run("models", "--available").stdout
    assert "smollm2-135m" in available
    assert "qwen2.5-14b-instruct" not in available
    org_id = json.loads(run("orgs", "create", "cli-org").stdout)["id"]
    members = json.loads(run("orgs", "add-member", org_id, b.id, "--permission", "deployment:invoke").stdout)[
        "members"
    ]
    assert {m["account_id"] for m in members} == {a.id, b.id}
    run("orgs", "remove-member", org_id, b.id)
    assert run("usage-export").stdout.startswith("deployment_id,minute,")
    refused = subprocess.run(
        [MODELYARD, "api-keys", "revoke", "key_" + "0" * 32],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode != 0
    assert "KEY_NOT_FOUND" in refused.stderr
