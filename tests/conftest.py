"""Session fixtures: the project's real PostgreSQL and Kafka, started by the tests themselves.

``pytest`` alone brings both up through ``modelyard.adapters.services`` (installing what is
missing), and stops at the end whatever it started. Each test that needs a database gets a
fresh one; each test that needs Kafka gets topics of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from modelyard.adapters.services.kafka import LocalKafka
from modelyard.adapters.services.postgres import LocalPostgres

SERVICES = Path(__file__).resolve().parents[1] / ".services"


@pytest.fixture(scope="session")
def local_postgres() -> Iterator[LocalPostgres]:
    """The project's PostgreSQL cluster, up for the whole session."""
    service = LocalPostgres(SERVICES / "postgres")
    started_here = not service.is_ready()
    service.up()
    yield service
    if started_here:
        service.down()


@pytest.fixture(scope="session")
def local_kafka() -> Iterator[LocalKafka]:
    """The project's Kafka broker, up for the whole session."""
    service = LocalKafka(SERVICES / "kafka")
    started_here = not service.is_ready()
    service.up()
    yield service
    if started_here:
        service.down()


@pytest.fixture
def pg_dsn(local_postgres: LocalPostgres) -> Iterator[str]:
    """A connection string to a database created for this test alone, dropped after it."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = local_postgres.conninfo
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield admin.replace("dbname=modelyard", f"dbname={name}")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def kafka_bootstrap(local_kafka: LocalKafka) -> str:
    """The broker's bootstrap address."""
    return local_kafka.bootstrap


@pytest.fixture
def topic_name() -> str:
    """A topic name no other test uses."""
    return f"test.{uuid.uuid4().hex[:12]}"
