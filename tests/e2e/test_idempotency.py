"""A retried provision (or scale, or destroy) with the same Idempotency-Key creates nothing new."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from modelyard.api.auth import CACHE_TTL_S

from .conftest import Yard
from .test_five_steps import poll_until

pytestmark = pytest.mark.e2e


def test_a_retried_provision_returns_the_first_result(simulated: Yard) -> None:
    client = httpx.Client(base_url=simulated.urls[0], headers={"Authorization": f"Bearer {simulated.key}"})
    body = {"model": "smollm2-135m", "capacity": 1}
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(
                lambda _: client.post("/v1/provision", json=body, headers={"Idempotency-Key": "agent-run-1"}),
                range(4),
            )
        )
    settled = [a for a in answers if a.status_code == 201]
    assert settled, [a.text for a in answers]
    assert all(a.status_code in (201, 409) for a in answers)
    ids = {a.json()["data"]["instance"]["id"] for a in settled}
    assert len(ids) == 1
    again = client.post("/v1/provision", json=body, headers={"Idempotency-Key": "agent-run-1"})
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["data"]["instance"]["id"] in ids
    assert client.get("/v1/instances").json()["data"]["count"] == 1

    other = client.post(
        "/v1/provision", json={**body, "capacity": 2}, headers={"Idempotency-Key": "agent-run-1"}
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"

    instance_id = ids.pop()
    poll_until(client, instance_id, "running")
    first = client.delete(f"/v1/instances/{instance_id}", headers={"Idempotency-Key": "bye"})
    second = client.delete(f"/v1/instances/{instance_id}", headers={"Idempotency-Key": "bye"})
    assert first.json() == second.json()
    assert second.headers["Idempotent-Replayed"] == "true"


def test_a_failed_command_releases_its_key(simulated: Yard) -> None:
    client = httpx.Client(base_url=simulated.urls[0], headers={"Authorization": f"Bearer {simulated.key}"})
    refused = client.post("/v1/provision", json={"model": "nope"}, headers={"Idempotency-Key": "k2"})
    assert refused.json()["error"]["code"] == "INVALID_MODEL"
    fixed = client.post("/v1/provision", json={"model": "nope"}, headers={"Idempotency-Key": "k2"})
    assert fixed.json()["error"]["code"] == "INVALID_MODEL"
    assert "Idempotent-Replayed" not in fixed.headers


def test_a_revoked_key_stops_working_within_seconds(simulated: Yard) -> None:
    client = httpx.Client(base_url=simulated.urls[0], headers={"Authorization": f"Bearer {simulated.key}"})
    assert client.get("/v1/instances").status_code == 200  # now cached as valid
    simulated.cli("keys", "revoke", simulated.key_id)
    # The key cache trusts an answer for CACHE_TTL_S; the views follow the store in milliseconds.
    time.sleep(CACHE_TTL_S + 1.0)
    refused = client.get("/v1/instances")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "INVALID_API_KEY"
