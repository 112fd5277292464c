"""Shown-once keys stay shown once: never in an idempotency record, forgotten however an
instance ends, and gone from the files when forgotten; the data files are private."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from modelyard.adapters.state import secrets
from modelyard.domain.deployments.service import OnDeployment, WithReason
from modelyard.domain.shared import ids
from modelyard.workers.janitor import Janitor

from .conftest import Edge


def _provision(edge: Edge, key: str | None = None) -> UUID:
    headers = edge.auth | ({"Idempotency-Key": key} if key else {})
    answer = edge.client.post("/v1/provision", json={"model": "smollm2-135m"}, headers=headers)
    assert answer.status_code == 201, answer.text
    return ids.parse_deployment_id(answer.json()["data"]["instance"]["id"])


def _secret(edge: Edge, deployment: UUID) -> str | None:
    with edge.core.state.read() as tx:
        return secrets.peek(tx, deployment)


def _state_bytes(edge: Edge) -> bytes:
    """Every byte of every file the state store keeps (the database and its journals)."""
    data = Path(edge.core.settings.data_dir)
    return b"".join(path.read_bytes() for path in sorted(data.glob("state.sqlite3*")))


def test_a_replayed_scale_shows_the_key_only_while_it_is_unseen(edge: Edge) -> None:
    deployment = _provision(edge)
    edge.bring_up(deployment)
    secret = _secret(edge, deployment)
    assert secret is not None
    assert secret.startswith("auxk_")
    url = f"/v1/instances/{ids.instance_ref(deployment)}/scale"
    headers = edge.auth | {"Idempotency-Key": "scale-1"}
    first = edge.client.post(url, json={"capacity": 2}, headers=headers)
    assert first.json()["data"]["instance"]["api_key"] == secret  # unseen yet: shown, as a GET would
    replay = edge.client.post(url, json={"capacity": 2}, headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["data"]["instance"]["api_key"] == secret
    with edge.core.state.read() as tx:
        stored = tx.execute("SELECT body FROM idempotency")
    assert stored
    assert not any(secret in str(body) for (body,) in stored)  # the record never held it

    with edge.core.state.transaction() as tx:
        secrets.forget(tx, deployment)  # what the gateway does on the key's first use
    after_use = edge.client.post(url, json={"capacity": 2}, headers=headers)
    assert after_use.headers["Idempotent-Replayed"] == "true"
    assert after_use.json()["data"]["instance"]["api_key"] is None
    assert secret not in after_use.text  # the hint (auxk_ and four characters) stays


def test_every_way_an_instance_ends_forgets_its_key_and_leaves_no_trace_in_the_files(edge: Edge) -> None:
    services = edge.core.services.deployments
    now = datetime.now(UTC)
    # Torn down by the reconciler (credit ran out), and failed while provisioning.
    torn_down, failed, live = _provision(edge), _provision(edge), _provision(edge)
    for deployment in (torn_down, live):
        edge.bring_up(deployment)
    kept = {d: _secret(edge, d) for d in (torn_down, failed, live)}
    assert all(s is not None and s.encode() in _state_bytes(edge) for s in kept.values())
    services.request_teardown(OnDeployment(deployment_id=torn_down, at=now))
    services.fail_provisioning(WithReason(deployment_id=failed, reason="no room", at=now))
    edge.wait_for(torn_down, "teardown")
    edge.wait_for(failed, "failed")

    assert Janitor(edge.core.state, edge.core.views).sweep() == 2
    assert _secret(edge, torn_down) is None
    assert _secret(edge, failed) is None
    assert _secret(edge, live) == kept[live]
    files = _state_bytes(edge)
    assert kept[torn_down].encode() not in files  # type: ignore[union-attr]
    assert kept[failed].encode() not in files  # type: ignore[union-attr]
    assert kept[live].encode() in files  # type: ignore[union-attr]


def test_the_api_destroy_forgets_the_key_in_the_files_at_once(edge: Edge) -> None:
    deployment = _provision(edge)
    edge.bring_up(deployment)
    secret = _secret(edge, deployment)
    assert secret is not None
    answer = edge.client.delete(f"/v1/instances/{ids.instance_ref(deployment)}", headers=edge.auth)
    assert answer.status_code == 200
    assert secret.encode() not in _state_bytes(edge)


def test_the_data_folder_and_its_databases_are_private(edge: Edge) -> None:
    _provision(edge, "private-1")  # the state store has written
    data = Path(edge.core.settings.data_dir)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    databases = sorted(data.glob("*.sqlite3*"))
    assert {p.name for p in databases} >= {"events.sqlite3", "views.sqlite3", "state.sqlite3"}
    for path in databases:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
