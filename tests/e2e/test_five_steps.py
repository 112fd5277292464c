"""The first document's five steps, as an agent runs them, on real llama.cpp replicas.

Provision, poll until running, chat through ``/v1/{id}/chat`` and the official ``openai``
SDK, destroy; then the ledger holds each minute the instance ran, charged at its price
pro-rated to the second, and nothing after the destroy.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from modelyard.adapters.eventstore.env import store_env
from modelyard.domain.deployments import events as ev
from modelyard.domain.shared import ids
from modelyard.domain.shared.store import Store
from modelyard.settings import load_settings

from .conftest import Yard

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
# Dedicated small (SmolLM2) at 1x: $0.15 per hour.
HOURLY_MICROS = 150_000


def poll_until(client: httpx.Client, instance_id: str, status: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        instance = client.get(f"/v1/instances/{instance_id}").json()["data"]["instance"]
        if instance["status"] == status:
            return dict(instance)
        assert instance["status"] not in ("failed",), instance
        assert time.monotonic() < deadline, instance
        time.sleep(0.5)


def expected_charges(yard: Yard, instance_id: str) -> dict[str, int]:
    """What each minute should cost, from the instance's own events."""
    store = Store(env=store_env(load_settings(yard.env)))
    try:
        events = list(store.events.get(ids.parse_deployment_id(instance_id)))
    finally:
        store.close()
    start = next(e.timestamp for e in events if isinstance(e, ev.DeploymentActivated)).replace(microsecond=0)
    end = next(e.timestamp for e in events if isinstance(e, ev.TeardownRequested)).replace(microsecond=0)
    charges: dict[str, int] = {}
    minute = start.replace(second=0)
    while minute < end:
        seconds = int((min(end, minute + timedelta(minutes=1)) - max(start, minute)).total_seconds())
        charges[minute.strftime("%Y-%m-%dT%H:%M")] = HOURLY_MICROS * 10 * seconds // 36_000
        minute += timedelta(minutes=1)
    return charges


def ledger_charges(yard: Yard) -> dict[str, int]:
    out = yard.cli("audit", "ledger", yard.account).stdout
    charges = {}
    for line in out.splitlines()[1:]:
        fields = line.split()
        if fields[2] == "charge":
            charges[fields[-1].rstrip("]")[:16]] = round(float(fields[3].lstrip("-")) * 1_000_000)
    return charges


def test_provision_poll_chat_destroy_and_the_ledger(embedded: Yard) -> None:
    url = embedded.urls[0]
    headers = {"Authorization": f"Bearer {embedded.key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        created = client.post("/v1/provision", json={"model": "smollm2-135m", "capacity": 1})
        assert created.status_code == 201, created.text
        instance = created.json()["data"]["instance"]
        assert instance["status"] == "provisioning"
        assert instance["id"].startswith("inst_")
        assert len(instance["id"]) >= len("inst_") + 12
        running = poll_until(client, instance["id"], "running")
        assert running["endpoint"] == f"{url}/v1/{instance['id']}"
        instance_key = running["api_key"]
        assert instance_key.startswith("auxk_")

        chat = httpx.post(
            f"{url}/v1/{instance['id']}/chat",
            headers={"Authorization": f"Bearer {instance_key}"},
            json={"message": "Summarize the moon landing in one sentence."},
            timeout=120,
        )
        assert chat.status_code == 200, chat.text
        data = chat.json()["data"]
        assert chat.json()["success"] is True
        assert len(data["message"].split()) >= 3
        assert data["model"] == "smollm2-135m"
        assert data["usage"]["completion_tokens"] > 0
        assert (
            data["usage"]["total_tokens"]
            == data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"]
        )
        assert data["response_time_ms"] > 0

        sdk = openai.OpenAI(base_url=running["openai_base_url"], api_key=instance_key)
        answer = sdk.chat.completions.create(
            model="auxen", messages=[{"role": "user", "content": "Hi"}], max_tokens=16
        )
        assert answer.model == "auxen"
        assert answer.choices[0].message.content
        assert answer.usage is not None
        assert answer.usage.completion_tokens <= 16

        # The management key is not an inference key, and the instance key does not manage.
        assert client.post(f"/v1/{instance['id']}/chat", json={"message": "x"}).json()["error"]["code"] == (
            "INVALID_API_KEY"
        )
        as_instance = httpx.get(f"{url}/v1/instances", headers={"Authorization": f"Bearer {instance_key}"})
        assert as_instance.json()["error"]["code"] == "INVALID_API_KEY"
        # The secret was shown until its first use; now only its hint remains.
        assert client.get(f"/v1/instances/{instance['id']}").json()["data"]["instance"]["api_key"] is None

        # Run into the next minute so at least one full and one partial minute are billed.
        time.sleep(max(0.0, 62 - datetime.now().second))
        destroyed = client.delete(f"/v1/instances/{instance['id']}")
        assert destroyed.json()["data"]["instance"]["status"] == "destroying"
        deadline = time.monotonic() + 60
        while (gone := client.get(f"/v1/instances/{instance['id']}")).status_code == 200:
            assert gone.json()["data"]["instance"]["status"] == "destroying"
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "INSTANCE_NOT_FOUND"
        refused = httpx.post(
            f"{url}/v1/{instance['id']}/chat",
            headers={"Authorization": f"Bearer {instance_key}"},
            json={"message": "still there?"},
        )
        assert refused.json()["error"]["code"] in ("INSTANCE_NOT_FOUND", "INVALID_API_KEY")

    expected = expected_charges(embedded, instance["id"])
    deadline = time.monotonic() + 150
    while (charges := ledger_charges(embedded)) != expected and time.monotonic() < deadline:
        time.sleep(2)
    assert charges == expected
    assert len(expected) >= 2
    time.sleep(20)  # a meter pass later, still nothing after the destroy
    assert ledger_charges(embedded) == expected
    assert embedded.cli("audit", "replay").stdout.startswith("identical:")
