"""No key outlives its one showing: not in a response, not in a file of the data directory.

A full lifecycle on ``modelyard serve`` (simulated engine): an idempotent provision and an
idempotent scale, the instance key used, both replayed after that use, a destroy (also
replayed), and an instance of a second account torn down when its credit ran out. Then
every response body and every byte under the data directory is searched for the secrets:
an ``auxk_`` key may appear only until its first use (or its instance's end), an
``auxen_live_`` key in no response and no file at all.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from .conftest import Yard
from .test_five_steps import poll_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
# Any secret-shaped token: a prefix and at least 20 characters (a hint has 4, then "…").
SECRET_SHAPED = re.compile(rb"(?:auxk_|auxen_live_)[A-Za-z0-9_-]{20,}")
SMOLLM = {"model": "smollm2-135m"}


class Recorder:
    """Every response body the test receives, in order."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def client(self, url: str, key: str) -> httpx.Client:
        def keep(response: httpx.Response) -> None:
            response.read()
            self.bodies.append(response.content)

        return httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
            event_hooks={"response": [keep]},
        )

    def mark(self) -> int:
        return len(self.bodies)

    def since(self, mark: int) -> bytes:
        return b"\n".join(self.bodies[mark:])


def _data_bytes(data_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data_dir)): p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file()}


def _used_key_replays(yard: Yard, seen: Recorder, client: httpx.Client) -> tuple[str, str]:
    """Provision and scale idempotently, use the key, replay both; returns (instance, key)."""
    created = client.post("/v1/provision", json=SMOLLM, headers={"Idempotency-Key": "p1"})
    assert created.status_code == 201, created.text
    instance = created.json()["data"]["instance"]["id"]
    key = poll_until(client, instance, "running")["api_key"]
    assert key.startswith("auxk_")
    scaled = client.post(
        f"/v1/instances/{instance}/scale", json={"capacity": 2}, headers={"Idempotency-Key": "s1"}
    )
    assert scaled.status_code == 200, scaled.text
    poll_until(client, instance, "running")
    chat = httpx.post(
        f"{yard.urls[0]}/v1/{instance}/chat",
        headers={"Authorization": f"Bearer {key}"},
        json={"message": "hello"},
        timeout=60,
    )
    assert chat.status_code == 200, chat.text
    deadline = time.monotonic() + 10
    while client.get(f"/v1/instances/{instance}").json()["data"]["instance"]["api_key"] is not None:
        assert time.monotonic() < deadline, "the key was still shown after its first use"
        time.sleep(0.2)
    after_use = seen.mark()
    replayed = client.post("/v1/provision", json=SMOLLM, headers={"Idempotency-Key": "p1"})
    assert replayed.headers["Idempotent-Replayed"] == "true"
    rescaled = client.post(
        f"/v1/instances/{instance}/scale", json={"capacity": 2}, headers={"Idempotency-Key": "s1"}
    )
    assert rescaled.headers["Idempotent-Replayed"] == "true"
    for _ in range(2):
        assert (
            client.delete(f"/v1/instances/{instance}", headers={"Idempotency-Key": "d1"}).status_code == 200
        )
    client.post(f"/v1/instances/{instance}/scale", json={"capacity": 2}, headers={"Idempotency-Key": "s1"})
    assert key.encode() not in seen.since(after_use)
    return instance, key


def _credit_runs_out(yard: Yard, seen: Recorder) -> str:
    """A second account with credit for a minute or so: its instance is torn down. Returns its key."""
    out = yard.cli("accounts", "create", "--name", "short", "--credits", "0.003").stdout
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    with seen.client(yard.urls[0], lines["api_key"]) as client:
        created = client.post("/v1/provision", json=SMOLLM, headers={"Idempotency-Key": "p2"})
        assert created.status_code == 201, created.text
        instance = created.json()["data"]["instance"]["id"]
        key = poll_until(client, instance, "running")["api_key"]
        assert key.startswith("auxk_")  # shown, never used
        deadline = time.monotonic() + 240
        while client.get(f"/v1/instances/{instance}").status_code != 404:
            assert time.monotonic() < deadline, "the instance outlived its credit"
            time.sleep(2)
        ended = seen.mark()
        replayed = client.post("/v1/provision", json=SMOLLM, headers={"Idempotency-Key": "p2"})
        assert replayed.headers["Idempotent-Replayed"] == "true"
        assert key.encode() not in seen.since(ended)
    return str(lines["api_key"]) + "\n" + key


def test_no_secret_outlives_its_one_showing(simulated: Yard) -> None:
    seen = Recorder()
    with seen.client(simulated.urls[0], simulated.key) as client:
        _, used_key = _used_key_replays(simulated, seen, client)
    second_management_key, starved_key = _credit_runs_out(simulated, seen).split("\n")
    data_dir = Path(simulated.env["MODELYARD_DATA_DIR"])
    time.sleep(2)  # a janitor pass at least
    for moment in ("running", "stopped"):
        if moment == "stopped":
            simulated.stop()
        files = _data_bytes(data_dir)
        for secret in (used_key, starved_key, simulated.key, second_management_key):
            holding = [name for name, content in files.items() if secret.encode() in content]
            assert not holding, f"{secret[:9]}… is still in {holding} ({moment})"
        shaped = {name: SECRET_SHAPED.findall(content) for name, content in files.items()}
        assert not any(shaped.values()), {k: v for k, v in shaped.items() if v}
    every_body = b"\n".join(seen.bodies)
    for management_key in (simulated.key, second_management_key):
        assert management_key.encode() not in every_body
