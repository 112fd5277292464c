"""The operator's commands as typed: accounts, credits, and the finance replay."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from modelyard.adapters.services.kafka import LocalKafka
from modelyard.adapters.services.postgres import LocalPostgres

pytestmark = pytest.mark.e2e
MODELYARD = str(Path(sys.executable).with_name("modelyard"))


def _run(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [MODELYARD, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if ok:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def _postgres_env(service: LocalPostgres) -> dict[str, str]:
    name = f"cli_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(service.conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return {**service.env(), "POSTGRES_DBNAME": name}


@pytest.fixture(params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    base = {**os.environ, "MODELYARD_DATA_DIR": str(tmp_path / "data")}
    base.pop("MODELYARD_KAFKA_BOOTSTRAP", None)
    if request.param == "postgres":
        base |= _postgres_env(request.getfixturevalue("local_postgres"))
    return base


def test_create_credit_replay_identical(env: dict[str, str]) -> None:
    created = _run(env, "accounts", "create", "--name", "acme", "--credits", "25.50")
    lines = dict(line.split(": ", 1) for line in created.stdout.splitlines())
    assert lines["account_id"].startswith("acct_")
    assert lines["api_key"].startswith("auxen_live_")
    assert "shown once" in created.stderr
    added = _run(env, "credits", "add", lines["account_id"], "1.25")
    assert "26.750000 USD" in added.stdout
    replay = _run(env, "audit", "replay")
    assert replay.stdout.startswith("identical: ")
    assert "1 accounts" in replay.stdout
    ledger = _run(env, "audit", "ledger", lines["account_id"])
    assert "+25.500000" in ledger.stdout
    assert "+1.250000  26.750000" in ledger.stdout


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("credits", "add", "acct_" + "0" * 32, "5"), "ACCOUNT_NOT_FOUND"),
        (("credits", "add", "acct_nope", "5"), "ACCOUNT_NOT_FOUND"),
        (("accounts", "create", "--name", "x", "--credits", "-3"), "INVALID_AMOUNT"),
        (("accounts", "create", "--name", "x", "--credits", "ten"), "INVALID_AMOUNT"),
    ],
)
def test_bad_input_gets_its_code_and_writes_nothing(
    env: dict[str, str], args: tuple[str, ...], code: str
) -> None:
    result = _run(env, *args, ok=False)
    assert result.returncode != 0
    assert code in result.stderr
    assert "Traceback" not in result.stderr
    assert _run(env, "audit", "replay").stdout.startswith("identical: 0 events")


@pytest.fixture
def cluster_env(
    local_postgres: LocalPostgres, local_kafka: LocalKafka, tmp_path: Path
) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        **_postgres_env(local_postgres),
        **local_kafka.env(),
        "MODELYARD_KAFKA_TOPIC": f"events.{uuid.uuid4().hex[:8]}",
        "MODELYARD_DATA_DIR": str(tmp_path / "data"),
    }
    worker = subprocess.Popen(
        [MODELYARD, "worker", "relay", "views"], env=env, stderr=subprocess.PIPE, text=True
    )
    yield env
    worker.terminate()
    assert worker.wait(timeout=30) == 0


def test_cluster_mode_replays_identically_from_the_store_and_from_kafka(cluster_env: dict[str, str]) -> None:
    account = _run(cluster_env, "accounts", "create", "--name", "k", "--credits", "3").stdout.split()[1]
    _run(cluster_env, "credits", "add", account, "0.000001")
    deadline = time.monotonic() + 60
    while True:
        ledger = _run(cluster_env, "audit", "ledger", account, ok=False)
        if "+0.000001  3.000001" in ledger.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "+0.000001  3.000001" in ledger.stdout, ledger.stdout + ledger.stderr
    for source in ("store", "kafka"):
        replay = _run(cluster_env, "audit", "replay", "--source", source)
        assert replay.stdout.startswith("identical: 4 events"), replay.stdout


def test_cluster_mode_export_verifies_against_the_store_and_kafka(
    cluster_env: dict[str, str], tmp_path: Path
) -> None:
    account = _run(cluster_env, "accounts", "create", "--name", "x", "--credits", "2").stdout.split()[1]
    _run(cluster_env, "credits", "add", account, "0.5")
    export = tmp_path / "ledger.csv"
    deadline = time.monotonic() + 60
    while True:
        _run(
            cluster_env,
            "audit",
            "export",
            "--account",
            account,
            "--format",
            "csv",
            "--output",
            str(export),
            ok=False,
        )
        if (export.exists() and len(export.read_text().splitlines()) == 4) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(export.read_text().splitlines()) == 4, export.read_text()  # header, 2 credits, the end
    for against in ("store", "kafka"):
        verified = _run(cluster_env, "audit", "verify", str(export), "--against", against)
        assert verified.stdout.startswith("intact: 2 lines"), verified.stdout
    lines = export.read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    export.write_text("\n".join(lines) + "\n")
    for against in ("chain", "kafka"):
        swapped = _run(cluster_env, "audit", "verify", str(export), "--against", against, ok=False)
        assert swapped.returncode == 1
        assert "line 1 is bad" in swapped.stderr, swapped.stderr
