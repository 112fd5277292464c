"""The same flow in cluster mode: PostgreSQL, Kafka, two API processes and a worker process."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from modelyard.adapters.services.kafka import LocalKafka
from modelyard.adapters.services.postgres import LocalPostgres

from .conftest import Yard
from .test_five_steps import poll_until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture
def cluster(local_postgres: LocalPostgres, local_kafka: LocalKafka, tmp_path: Path) -> Iterator[Yard]:
    name = f"cluster_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(local_postgres.conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "POSTGRES_"))}
    env |= local_postgres.env() | local_kafka.env()
    env |= {"POSTGRES_DBNAME": name, "MODELYARD_KAFKA_TOPIC": f"events.{name}",
            "MODELYARD_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    yard = Yard(env=env, cwd=tmp_path, urls=[])
    with yard:
        yard.start_cluster()
        yield yard


def test_provision_on_one_api_process_poll_and_chat_on_the_other(cluster: Yard) -> None:
    first, second = (
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {cluster.key}"}, timeout=120)
        for url in cluster.urls
    )
    with first, second:
        created = first.post("/v1/provision", json={"model": "smollm2-135m", "capacity": 2})
        assert created.status_code == 201, created.text
        instance_id = created.json()["data"]["instance"]["id"]
        running = poll_until(second, instance_id, "running")
        for url in cluster.urls:
            chat = httpx.post(
                f"{url}/v1/{instance_id}/chat",
                headers={"Authorization": f"Bearer {running['api_key']}"},
                json={"message": "Name a planet."},
                timeout=120,
            )
            assert chat.status_code == 200, chat.text
            assert chat.json()["data"]["usage"]["completion_tokens"] > 0
        scaled = first.post(f"/v1/instances/{instance_id}/scale", json={"capacity": 1})
        assert scaled.json()["data"]["instance"]["status"] in ("scaling", "running")
        assert poll_until(second, instance_id, "running")["capacity"] == 1
        second.delete(f"/v1/instances/{instance_id}")
    for source in ("store", "kafka"):
        assert cluster.cli("audit", "replay", "--source", source).stdout.startswith("identical:")
