"""Rate limits: headers on every answer, 429 with Retry-After, and one limit across processes."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from modelyard.adapters.services.kafka import LocalKafka
from modelyard.adapters.services.postgres import LocalPostgres

from .conftest import Yard, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
LIMIT = 40


@pytest.fixture
def two_api_processes(
    local_postgres: LocalPostgres, local_kafka: LocalKafka, tmp_path: Path
) -> Iterator[Yard]:
    name = f"rl_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(local_postgres.conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "POSTGRES_"))}
    env |= local_postgres.env() | local_kafka.env() | {"POSTGRES_DBNAME": name}
    env |= {"MODELYARD_KAFKA_TOPIC": f"events.{name}", "MODELYARD_RATE_LIMIT_RPM": str(LIMIT)}
    yard = Yard(env=env, cwd=tmp_path, urls=[])
    with yard:
        yard.start("worker", "relay", "views")
        yard.start("api", port=free_port())
        yard.start("api", port=free_port())
        yard.fund("1.00")
        yield yard


def test_the_limit_holds_across_two_api_processes(two_api_processes: Yard) -> None:
    headers = {"Authorization": f"Bearer {two_api_processes.key}"}
    urls = two_api_processes.urls

    def call(i: int) -> httpx.Response:
        return httpx.get(f"{urls[i % 2]}/v1/balance", headers=headers, timeout=30)

    # The burst must fall inside one minute window: start it early in a minute.
    if datetime.now(UTC).second > 40:
        time.sleep(61 - datetime.now(UTC).second)
    used = two_api_processes.await_key()
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(call, range(3 * LIMIT)))
    admitted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(admitted) + len(refused) == len(responses)
    # Three times the limit, half through each process: exactly what is left of it gets through.
    assert len(admitted) == LIMIT - used
    first = refused[0]
    assert first.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert int(first.headers["Retry-After"]) >= 1
    for response in responses:
        assert response.headers["X-RateLimit-Limit"] == str(LIMIT)
        assert int(response.headers["X-RateLimit-Remaining"]) >= 0
        assert "X-RateLimit-Reset" in response.headers
