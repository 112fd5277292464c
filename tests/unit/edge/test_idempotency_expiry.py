"""Idempotency records expire: an abandoned claim is taken over, an old record is gone.

The defect: a server killed 45 ms into a provision left its key pending for good (every
retry: 409 "still running"), while the instance it had created ran and was charged.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import msgspec

from modelyard.adapters.keygen import INSTANCE_PREFIX, new_secret
from modelyard.adapters.state import idempotency as records
from modelyard.adapters.state import secrets
from modelyard.adapters.state.db import open_state
from modelyard.api import idempotency
from modelyard.api.instances.schemas import ProvisionRequest
from modelyard.domain.deployments.service import Provision, RequestDeployment
from modelyard.domain.keys.aggregate import display_of, hash_secret
from modelyard.domain.shared import ids
from modelyard.settings import load_settings

from .conftest import Edge

T0 = 1_000_000.0
BOUND = records.ABANDONED_AFTER_S


def _claim(state: object, key: str, request: str, now: float) -> UUID | None:
    with state.transaction() as tx:  # type: ignore[attr-defined]
        return records.claim(tx, "acct", key, request, at="then", now=now)


def test_a_pending_claim_older_than_the_bound_is_taken_over_once_keeping_its_id(tmp_path: Path) -> None:
    state = open_state(load_settings({"MODELYARD_DATA_DIR": str(tmp_path)}))
    try:
        first = _claim(state, "k", "h", T0)
        assert first is not None
        assert _claim(state, "k", "h", T0 + BOUND - 1) is None  # still running, as far as anyone knows
        assert _claim(state, "k", "another request", T0 + BOUND + 1) is None
        assert _claim(state, "k", "h", T0 + BOUND + 1) == first  # abandoned: the retry takes it over
        assert _claim(state, "k", "h", T0 + BOUND + 2) is None  # and now holds it
    finally:
        state.close()


def test_a_record_is_kept_for_its_retention_then_expires(tmp_path: Path) -> None:
    state = open_state(load_settings({"MODELYARD_DATA_DIR": str(tmp_path)}))
    try:
        first = _claim(state, "k", "h", T0)
        assert first is not None
        with state.transaction() as tx:
            records.complete(tx, "acct", "k", first, status=201, body="{}")
        assert _claim(state, "k", "h", T0 + records.RETENTION_S - 1) is None  # replayed, not rerun
        later = _claim(state, "k", "h", T0 + records.RETENTION_S + 1)
        assert later is not None
        assert later != first  # a fresh claim: the old answer is gone
        assert _claim(state, "gone", "h", T0) is not None
        with state.transaction() as tx:
            assert records.prune(tx, now=T0 + records.RETENTION_S + 0.5) == 1  # "gone"; "k" is newer
            assert records.recorded(tx, "acct", "gone") is None
            assert records.recorded(tx, "acct", "k") is not None
    finally:
        state.close()


OLD_TABLE = """
CREATE TABLE idempotency (
    account_id TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL, status INTEGER NOT NULL,
    body TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (account_id, key)
)
"""


def test_records_written_before_expiry_existed_lose_their_key_and_expire(tmp_path: Path) -> None:
    old_key = "auxk_" + "x" * 43
    body = msgspec.json.encode({"data": {"instance": {"id": "inst_1", "api_key": old_key}}}).decode()
    with sqlite3.connect(tmp_path / "state.sqlite3") as conn:
        conn.execute(OLD_TABLE)
        conn.execute("INSERT INTO idempotency VALUES ('acct', 'done', 'h', 200, ?, 'then')", [body])
        conn.execute("INSERT INTO idempotency VALUES ('acct', 'stuck', 'h', 0, '', 'then')")
    conn.close()
    before = time.time()
    state = open_state(load_settings({"MODELYARD_DATA_DIR": str(tmp_path)}))
    try:
        with state.read() as tx:
            done = records.recorded(tx, "acct", "done")
        assert done is not None
        assert old_key not in done.body
        assert msgspec.json.decode(done.body)["data"]["instance"] == {"id": "inst_1", "api_key": None}
        # The key left pending for good by a crash before this change is free a bound later.
        assert _claim(state, "stuck", "h", before + 1) is None
        assert _claim(state, "stuck", "h", time.time() + BOUND + 1) is not None
        with state.transaction() as tx:
            assert records.prune(tx, now=time.time() + BOUND + records.RETENTION_S + 2) == 2
    finally:
        state.close()
    assert old_key.encode() not in (tmp_path / "state.sqlite3").read_bytes()


def _dead_claim(edge: Edge, key: str) -> UUID:
    """What a first attempt left when its server was killed: its claim, pending, past the bound."""
    request = idempotency.fingerprint("provision", ProvisionRequest(model="smollm2-135m"))
    account = ids.public_id(ids.ACCOUNT, edge.account)
    with edge.core.state.transaction() as tx:
        claim = records.claim(
            tx,
            account,
            key,
            hashlib.sha256(request).hexdigest(),
            at=datetime.now(UTC).isoformat(),
            now=time.time() - BOUND - 1,
        )
    assert claim is not None
    return claim


def _provision(edge: Edge, key: str) -> dict[str, object]:
    answer = edge.client.post(
        "/v1/provision", json={"model": "smollm2-135m"}, headers={**edge.auth, "Idempotency-Key": key}
    )
    assert answer.status_code == 201, answer.text
    instance: dict[str, object] = answer.json()["data"]["instance"]
    return instance


def _count(edge: Edge) -> int:
    return int(edge.client.get("/v1/instances", headers=edge.auth).json()["data"]["count"])


def test_a_retry_after_a_crash_finds_the_instance_the_dead_attempt_created(edge: Edge) -> None:
    claim = _dead_claim(edge, "crash-after-record")
    # The dead attempt had kept its secret and recorded the deployment under the claim's id.
    with edge.core.state.transaction() as tx:
        secret = secrets.hold(tx, claim, new_secret(INSTANCE_PREFIX)[0])
    command = RequestDeployment(
        account_id=edge.account, model="smollm2-135m", deployment_id=claim, at=datetime.now(UTC)
    )
    edge.core.services.deployments.provision(
        Provision(deployment=command, key_hash=hash_secret(secret), key_display=display_of(secret))
    )
    retried = _provision(edge, "crash-after-record")
    assert retried["id"] == ids.instance_ref(claim)
    assert _count(edge) == 1
    edge.bring_up(claim)
    shown = edge.client.get(f"/v1/instances/{ids.instance_ref(claim)}", headers=edge.auth).json()
    assert shown["data"]["instance"]["api_key"] == secret  # the key recorded is the key shown


def test_a_retry_after_a_crash_before_anything_was_recorded_provisions_once(edge: Edge) -> None:
    claim = _dead_claim(edge, "crash-before-record")
    retried = _provision(edge, "crash-before-record")
    assert retried["id"] == ids.instance_ref(claim)
    again = _provision(edge, "crash-before-record")
    assert again["id"] == retried["id"]
    assert _count(edge) == 1


def test_a_claim_within_the_bound_is_still_running(edge: Edge) -> None:
    request = idempotency.fingerprint("provision", ProvisionRequest(model="smollm2-135m"))
    with edge.core.state.transaction() as tx:
        records.claim(
            tx,
            ids.public_id(ids.ACCOUNT, edge.account),
            "in-flight",
            hashlib.sha256(request).hexdigest(),
            at=datetime.now(UTC).isoformat(),
            now=time.time(),
        )
    refused = edge.client.post(
        "/v1/provision", json={"model": "smollm2-135m"}, headers={**edge.auth, "Idempotency-Key": "in-flight"}
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    assert _count(edge) == 0
