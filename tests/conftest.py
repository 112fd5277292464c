"""Session fixtures: the project's real PostgreSQL and Kafka, started by the tests themselves.

``pytest`` alone brings both up through ``modelyard.adapters.services`` (installing what is
missing), and stops at the end whatever it started. Each test that needs a database gets a
fresh one; each test that needs Kafka gets topics of its own.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from modelyard.adapters.engines.models import gguf_paths
from modelyard.adapters.services.kafka import LocalKafka
from modelyard.adapters.services.postgres import LocalPostgres
from modelyard.adapters.services.ray import LocalRay
from modelyard.domain.shared.store import Store

SERVICES = Path(__file__).resolve().parents[1] / ".services"


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """An event store of its own in a SQLite file under the test's folder."""
    store = Store(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(tmp_path / "events.sqlite3"),
            "CREATE_TABLE": "y",
        }
    )
    yield store
    store.close()


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


# A lost node is declared dead after about five missed one-second health checks: fast enough
# for a test, slow enough that a busy machine's pause is not taken for a loss.
RAY_HEALTH_CHECKS = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "3000",
    "RAY_health_check_failure_threshold": "5",
}


@dataclass(frozen=True)
class RayCluster:
    """A real two-node Ray cluster on this machine: the head stands for an h100 node in
    nyc2, the worker for an mi300x node in tor1 (custom resources, as real nodes advertise)."""

    head: LocalRay
    worker: LocalRay

    @property
    def address(self) -> str:
        return self.head.address


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """The Ray cluster for the ``ray`` placement's tests, up for the session, small (two CPUs
    a node, a 100 MB object store, no dashboard), and ended with every process it started."""
    # Short: Ray keeps its sockets under it, and a socket's path has a length limit.
    root = Path(tempfile.mkdtemp(prefix="myray-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    head = LocalRay(
        root / "head",
        port=port,
        resources={"gpu_type:h100": 1, "region:nyc2": 1},
        environment=RAY_HEALTH_CHECKS,
        temp_dir=root / "tmp",
    )
    worker = LocalRay(root / "worker", head=head.address, resources={"gpu_type:mi300x": 1, "region:tor1": 1})
    try:
        head.up()
        worker.up()
        yield RayCluster(head=head, worker=worker)
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        worker.down()
        head.down()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def plain_llama() -> Iterator[Any]:
    """llama-cpp-python in this process with the backend's arguments and no prompt cache."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=gguf_paths("")["smollm2-135m"],
        n_ctx=2048,
        n_threads=2,
        verbose=False,
        chat_format="chatml-function-calling",
    )
    yield llm
    llm.close()
