"""The second document's deployments, as its examples run them, over HTTP.

On real llama.cpp (``smollm2-135m``): create, poll until ``active``, chat on the
deployment's own route (the official ``openai`` SDK with the deployment's key, and plain
HTTP with the management key), delete, and the balance read at once is final: every
second the deployment ran is charged, the last partial minute included. On the simulated
engine: the control plane's answers and refusals as a client reads them.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from .conftest import Yard
from .test_five_steps import expected_charges

pytestmark = pytest.mark.e2e
BASE = "/api/v1/public/deployments"
CREDIT = 5_000_000


def poll_status(client: httpx.Client, dep_id: str, status: str, timeout: float = 120) -> dict[str, Any]:
    """The second document's polling loop: GET until ``status``."""
    deadline = time.monotonic() + timeout
    while True:
        deployment: dict[str, Any] = client.get(f"{BASE}/{dep_id}").json()
        if deployment["status"] == status:
            return deployment
        assert deployment["status"] != "failed", deployment
        assert time.monotonic() < deadline, deployment
        time.sleep(0.3)


@pytest.mark.slow
def test_create_poll_chat_delete_on_llamacpp_and_the_balance_is_final_at_once(embedded: Yard) -> None:
    url = embedded.urls[0]
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {embedded.key}"}, timeout=120
    ) as client:
        created = client.post(
            BASE,
            json={"name": "prod-inference", "model_id": "smollm2-135m", "replicas": 1, "preset": "balanced"},
        )
        assert created.status_code == 201, created.text
        deployment = created.json()
        assert deployment["id"].startswith("dep_")
        assert deployment["status"] == "provisioning"
        assert deployment["engine"]["name"] == "llamacpp"
        active = poll_status(client, deployment["id"], "active")
        assert active["ready_replicas"] == 1
        key = active["api_key"]
        assert key.startswith("auxk_")

        sdk = openai.OpenAI(base_url=active["endpoint"], api_key=key)
        answer = sdk.chat.completions.create(
            model="llama-3.3-70b-instruct", messages=[{"role": "user", "content": "Hello"}], max_tokens=12
        )
        assert answer.model == "llama-3.3-70b-instruct"  # echoed, as on every instance route
        assert answer.choices[0].message.content
        assert answer.usage is not None
        assert 0 < answer.usage.completion_tokens <= 12
        # The spec's own example: requests.post(…/chat/completions) with the account's API key.
        managed = client.post(
            f"{BASE}/{deployment['id']}/chat/completions",
            json={"model": "x", "messages": [{"role": "user", "content": "Say yes."}], "max_tokens": 4},
        )
        assert managed.status_code == 200, managed.text
        assert managed.json()["object"] == "chat.completion"

        # Billing counts whole seconds: the chats above can take less than one, and a
        # deployment destroyed within the second it started owes nothing to check.
        time.sleep(1.2)
        deleted = client.delete(f"{BASE}/{deployment['id']}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["status"] == "teardown"
        balance = client.get("/v1/balance").json()["data"]
    owed = expected_charges(embedded, deployment["id"])
    assert sum(owed.values()) > 0
    # Read right after the delete, the balance already holds every minute, the partial one too.
    assert balance["balance_micros"] == CREDIT - sum(owed.values())
    assert balance["reserved_usd"] == "0.000000"


def test_the_control_plane_over_http_on_the_simulated_engine(simulated: Yard) -> None:
    url = simulated.urls[0]
    other = simulated.cli("accounts", "create", "--name", "other", "--credits", "1").stdout
    other_key = other.split("api_key: ")[1].split()[0]
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {simulated.key}"}, timeout=60
    ) as client:
        spec = {"name": "prod", "model_id": "llama-3.3-70b-instruct", "gpu_type": "mi300x", "region": "nyc2"}
        created = client.post(BASE, json={**spec, "preset": "speed"})
        assert created.status_code == 201, created.text
        dep_id = created.json()["id"]
        active = poll_status(client, dep_id, "active")
        assert (active["gpu_type"], active["region"], active["preset"]) == ("mi300x", "nyc2", "speed")
        listed = client.get(BASE).json()
        assert [d["id"] for d in listed["deployments"]] == [dep_id]
        # Both dialects read the same deployment.
        inst = "inst_" + dep_id.removeprefix("dep_")
        assert client.get(f"/v1/instances/{inst}").json()["data"]["instance"]["status"] == "running"

        chat = f"{BASE}/{dep_id}/chat/completions"
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
        assert client.post(chat, json=body).status_code == 200
        as_key = httpx.post(url + chat, json=body, headers={"Authorization": f"Bearer {active['api_key']}"})
        assert as_key.status_code == 200, as_key.text
        foreign = httpx.post(url + chat, json=body, headers={"Authorization": f"Bearer {other_key}"})
        assert foreign.status_code == 404
        assert foreign.json()["error"]["code"] == "INSTANCE_NOT_FOUND"
        assert httpx.post(url + chat, json=body).json()["error"]["code"] == "API_KEY_REQUIRED"
        theirs = httpx.get(f"{url}{BASE}/{dep_id}", headers={"Authorization": f"Bearer {other_key}"})
        assert theirs.status_code == 404

        scaling = client.patch(
            f"{BASE}/{dep_id}/scaling",
            json={"min_replicas": 1, "max_replicas": 4, "scale_to_zero": True, "idle_timeout_seconds": 300},
        )
        assert scaling.status_code == 200, scaling.text
        assert client.get(f"{BASE}/{dep_id}/scaling").json()["max_replicas"] == 4
        sla = client.patch(
            f"{BASE}/{dep_id}/sla",
            json={"ttft_target_ms": 500, "throughput_target_tps": 100, "concurrency_limit": 50},
        )
        assert sla.status_code == 200, sla.text
        assert client.get(f"{BASE}/{dep_id}/sla").json()["breaches"] == []
        bad = client.patch(f"{BASE}/{dep_id}/scaling", json={"min_replicas": 5, "max_replicas": 2})
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "INVALID_REQUEST"

        metrics = client.get(f"{BASE}/{dep_id}/metrics").json()
        assert metrics["live"] is True  # read from the replica's own /metrics
        assert (metrics["ready_replicas"], metrics["active_concurrency"]) == (1, 0)
        assert metrics["ttft_ms"]["p50"] is not None
        assert metrics["sla"]["ttft_target_ms"] == 500
        deadline = time.monotonic() + 30
        while not (models := client.get("/api/v1/public/inference/metrics").json()["models"]):
            assert time.monotonic() < deadline, "the usage records never reached the metrics view"
            time.sleep(0.3)
        assert models[0]["model"] == "llama-3.3-70b-instruct"
        assert models[0]["requests"] >= 2
        assert models[0]["completion_tokens"] > 0

        gone = client.delete(f"{BASE}/{dep_id}")
        assert gone.json()["status"] == "teardown"
        poll_status(client, dep_id, "inactive", timeout=60)
        late = client.patch(f"{BASE}/{dep_id}/sla", json={"ttft_target_ms": 100})
        assert late.status_code == 409
        assert late.json()["error"]["code"] == "ILLEGAL_TRANSITION"
