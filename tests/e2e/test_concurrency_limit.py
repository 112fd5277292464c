"""The SLA's ``concurrency_limit`` holds across two API processes of a cluster.

PostgreSQL, Kafka, a worker process and two API processes; the simulated engine takes three
seconds to a first token, so requests sent together are all in flight at once. Eight of
them, four to each API process, against a limit of three: three are answered, five refused
with 429 ``RATE_LIMIT_EXCEEDED`` and ``Retry-After`` (a limit per process would have let six
through). Once they finish, the slots are free again.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from modelyard.adapters.eventstore.env import store_env
from modelyard.adapters.services.kafka import LocalKafka
from modelyard.adapters.services.postgres import LocalPostgres
from modelyard.adapters.views.db import open_views
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.service import DeploymentsService, SetSla
from modelyard.domain.shared import ids
from modelyard.domain.shared.store import Store
from modelyard.projections.deployments.queries import deployment_state
from modelyard.settings import load_settings

from .conftest import Yard
from .test_five_steps import poll_until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
LIMIT = 3


@pytest.fixture
def cluster(local_postgres: LocalPostgres, local_kafka: LocalKafka, tmp_path: Path) -> Iterator[Yard]:
    name = f"conc_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(local_postgres.conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "POSTGRES_"))}
    env |= local_postgres.env() | local_kafka.env()
    env |= {
        "POSTGRES_DBNAME": name,
        "MODELYARD_KAFKA_TOPIC": f"events.{name}",
        "MODELYARD_DATA_DIR": str(tmp_path / "data"),
        "MODELYARD_ENGINE": "simulated",
        "MODELYARD_SIMULATED_TTFT_MS": "3000",
    }
    yard = Yard(env=env, cwd=tmp_path, urls=[])
    with yard:
        yard.start_cluster()
        yield yard
    with psycopg.connect(local_postgres.conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _limit_seen(yard: Yard, instance_id: str, timeout: float = 60) -> None:
    """Wait until the views hold the limit, then past the gateways' one-second cache of it."""
    views = open_views(load_settings(yard.env))
    deadline = time.monotonic() + timeout
    try:
        while True:
            with views.read() as tx:
                found = deployment_state(tx, ids.parse_deployment_id(instance_id))
            if found is not None and found.concurrency_limit == LIMIT:
                break
            assert time.monotonic() < deadline, "the limit never reached the views"
            time.sleep(0.2)
    finally:
        views.close()
    time.sleep(1.2)


def test_the_concurrency_limit_holds_across_two_api_processes(cluster: Yard) -> None:
    headers = {"Authorization": f"Bearer {cluster.key}"}
    with httpx.Client(base_url=cluster.urls[0], headers=headers, timeout=60) as client:
        created = client.post("/v1/provision", json={"model": "smollm2-135m", "capacity": 1})
        assert created.status_code == 201, created.text
        instance_id = created.json()["data"]["instance"]["id"]
        key = poll_until(client, instance_id, "running")["api_key"]
    store = Store(env=store_env(load_settings(cluster.env)))
    try:
        DeploymentsService(store).set_sla(
            SetSla(
                deployment_id=ids.parse_deployment_id(instance_id),
                targets=ev.SlaTargets(concurrency_limit=LIMIT),
                at=datetime.now(UTC),
            )
        )
    finally:
        store.close()
    _limit_seen(cluster, instance_id)

    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    answers: list[httpx.Response] = []
    start = threading.Barrier(8)

    def send(url: str) -> None:
        start.wait()
        answers.append(
            httpx.post(
                f"{url}/v1/{instance_id}/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
                timeout=60,
            )
        )

    threads = [threading.Thread(target=send, args=(cluster.urls[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * LIMIT + [429] * (8 - LIMIT), [a.text for a in answers]
    refused = [a for a in answers if a.status_code == 429]
    assert all(a.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED" for a in refused)
    assert all("concurrent requests" in a.json()["error"]["message"] for a in refused)
    assert all(int(a.headers["Retry-After"]) >= 1 for a in refused)
    # Every answered request gave its slot back: a new one goes through on either process.
    for url in cluster.urls:
        again = httpx.post(
            f"{url}/v1/{instance_id}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        assert again.status_code == 200, again.text
