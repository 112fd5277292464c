"""Cluster mode: two dispatcher processes in one Kafka consumer group, one killed mid-delivery.

PostgreSQL holds the store, the views and the state; a worker process relays the store to
Kafka and keeps the views; two ``modelyard worker webhooks`` processes share the events
topic's partitions. The receiver answers slowly, so deliveries are in flight when one
dispatcher is SIGKILLed. The other takes its partitions over and re-reads from the
committed offsets: every delivery arrives, each deployment's in order, and the only repeats
are deliveries the killed process had not recorded as acknowledged (at most one per
deployment: one is in flight per deployment at a time), with the same ``webhook-id``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import psycopg
import pytest
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient

from modelyard.adapters.services.kafka import LocalKafka
from modelyard.adapters.services.postgres import LocalPostgres
from modelyard.adapters.state import webhooks as stored
from modelyard.adapters.webhooks.dead_letters import dead_letter_topic
from modelyard.adapters.webhooks.signing import new_webhook_secret
from modelyard.cli.compose import WEBHOOKS_GROUP, Core, build_workers, consumer_group, opened_core, running
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.deployments.service import OnDeployment, ReplicaCommand, RequestDeployment, WithCapacity
from modelyard.domain.webhooks.service import SubscribeWebhook
from modelyard.projections.webhooks.queries import subscription_by_id
from modelyard.settings import load_settings

from .conftest import Received, Receiver

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODELYARD = str(Path(sys.executable).with_name("modelyard"))
DEPLOYMENTS = 8
# Per deployment: active, then scaled to 2, 4, 8, 4, 2.
CAPACITIES = (2, 4, 8, 4, 2)


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def cluster_env(
    local_postgres: LocalPostgres, local_kafka: LocalKafka, tmp_path: Path
) -> Iterator[dict[str, str]]:
    name = f"hooks_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(local_postgres.conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "POSTGRES_"))}
    env |= local_postgres.env() | local_kafka.env()
    env |= {
        "POSTGRES_DBNAME": name,
        "MODELYARD_KAFKA_TOPIC": f"events.{name}",
        "MODELYARD_DATA_DIR": str(tmp_path / "data"),
        "MODELYARD_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "MODELYARD_WEBHOOK_RETRY_SCHEDULE": "0.1,0.2,0.4,0.8,1.6",
        "MODELYARD_WEBHOOK_TIMEOUT_S": "5",
    }
    yield env
    with psycopg.connect(local_postgres.conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _start(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen[bytes]:
    log = cwd / f"{'-'.join(args)}-{time.monotonic_ns()}.log"
    with log.open("ab") as out:
        return subprocess.Popen([MODELYARD, *args], env=env, cwd=cwd, stdout=out, stderr=out)


def _members(bootstrap: str, group: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        found = admin.describe_groups([group]).get(group, {})
        state = found.get("group_state", found.get("state"))
        return len(found.get("members", [])) if state == "Stable" else 0
    finally:
        admin.close()


def _subscribe(core: Core, deployment: UUID, url: str) -> tuple[UUID, str]:
    """What the route does: the secret kept first, then the subscription recorded."""
    webhook, secret = uuid.uuid4(), new_webhook_secret()
    with core.state.transaction() as tx:
        stored.keep_secret(tx, webhook, secret, now=time.time())
    events = ("deployment.active", "deployment.scaled")
    command = SubscribeWebhook(
        deployment_id=deployment, url=url, events=events, at=_now(), webhook_id=webhook
    )
    core.services.webhooks.subscribe(command)
    return webhook, secret


def test_a_killed_dispatcher_loses_nothing(
    cluster_env: dict[str, str], receiver: Receiver, tmp_path: Path
) -> None:
    settings = load_settings(cluster_env)
    group = consumer_group(WEBHOOKS_GROUP, settings)
    receiver.delay_s = 0.15  # slow enough that deliveries are in flight when one is killed
    with ExitStack() as stack:
        core = stack.enter_context(opened_core(settings))
        procs = [_start(cluster_env, tmp_path, "worker", "relay", "views")]
        procs += [_start(cluster_env, tmp_path, "worker", "webhooks") for _ in range(2)]

        def stop_all() -> None:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()

        stack.callback(stop_all)
        services = core.services
        account = services.accounts.open_account(OpenAccount(name="crash", plan="enterprise", at=_now())).id
        services.accounts.add_credits(AddCredits(account_id=account, amount=100_000_000, at=_now()))
        deployments = []
        for _ in range(DEPLOYMENTS):
            request = RequestDeployment(
                account_id=account, model="smollm2-135m", capacity=1, tier="dedicated", at=_now()
            )
            deployments.append(services.deployments.request(request).id)
        secrets = {}
        for deployment in deployments:
            webhook, secret = _subscribe(core, deployment, receiver.url)
            secrets[webhook.hex] = secret
        # The subscriptions are in the views, and both dispatchers are in the group.
        with _logs_on_failure(tmp_path):
            _settle(core, secrets, settings.kafka_bootstrap, group, procs)
        for deployment in deployments:
            at = _now()
            services.deployments.start_replica(
                ReplicaCommand(deployment_id=deployment, replica="r1", base_url="http://127.0.0.1:9", at=at)
            )
            services.deployments.activate(OnDeployment(deployment_id=deployment, at=at))
        for capacity in CAPACITIES:
            for deployment in deployments:
                services.deployments.request_scale(
                    WithCapacity(deployment_id=deployment, capacity=capacity, at=_now())
                )
                services.deployments.finish_scale(
                    WithCapacity(deployment_id=deployment, capacity=capacity, at=_now())
                )
        expected = DEPLOYMENTS * (1 + len(CAPACITIES))
        with _logs_on_failure(tmp_path):
            receiver.wait_for(expected // 4, timeout=60)
            # Whichever dispatcher is sending now: the partitions (and so the deployments)
            # each one holds are the broker's choice.
            victim = _in_flight(procs[1:], receiver)
            victim.kill()  # SIGKILL: no goodbye to the group, no commit, deliveries cut mid-flight
            victim.wait()
            receiver.wait_for(expected, timeout=120)
            # Until the survivor has re-read what the victim left (a repeat would arrive now).
            _wait_all_final(core, expected)
        time.sleep(1.0)
        delivered = receiver.delivered()

    _check(delivered, secrets, expected)


def _check(delivered: list[Received], secrets: dict[str, str], expected: int) -> None:
    """Nothing lost, repeats only of unrecorded deliveries, all signed, each deployment in order."""
    counts = Counter(r.headers["webhook-id"] for r in delivered)
    assert len(counts) == expected, "a delivery was lost"
    repeats = {ident: n for ident, n in counts.items() if n > 1}
    # A repeat is a delivery the victim had sent but not recorded: one in flight per deployment.
    # The one cut by the kill was answered by the receiver but never by the victim's record,
    # so it must come again, from the survivor, under the same webhook-id.
    assert 1 <= sum(n - 1 for n in repeats.values()) <= DEPLOYMENTS, repeats
    for request in delivered:
        request.verify(secrets[request.headers["webhook-id"].rsplit("_", 1)[1]])
    # Per deployment, first arrivals in event order (notification ids ascend).
    firsts: dict[str, list[int]] = {}
    seen_ids: set[str] = set()
    for request in delivered:
        ident = request.headers["webhook-id"]
        if ident in seen_ids:
            continue
        seen_ids.add(ident)
        firsts.setdefault(request.json["data"]["deployment_id"], []).append(int(ident.split("_")[1]))
    assert len(firsts) == DEPLOYMENTS
    for order in firsts.values():
        assert order == sorted(order)
        assert len(order) == 1 + len(CAPACITIES)


def _connections_to(port: int) -> dict[str, int]:
    """Socket inode to local port, of every TCP connection to ``port`` on loopback (from /proc)."""
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if int(remote.split(":")[1], 16) == port:
            found[inode] = int(local.split(":")[1], 16)
    return found


def _local_ports(pid: int, connections: dict[str, int]) -> set[int]:
    """The local ports of those of ``connections`` that ``pid`` holds."""
    ports = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in connections:
            ports.add(connections[target[8:-1]])
    return ports


def _in_flight(dispatchers: list[subprocess.Popen[bytes]], receiver: Receiver) -> subprocess.Popen[bytes]:
    """The first of ``dispatchers`` seen with a request the receiver is answering: a kill now
    cuts a delivery."""
    port = int(receiver.url.split(":")[2].split("/")[0])
    deadline = time.monotonic() + 30
    while True:
        with receiver.lock:
            busy = set(receiver.in_flight)
        connections = _connections_to(port)  # read once a pass, for every dispatcher
        for proc in dispatchers:
            if busy & _local_ports(proc.pid, connections):
                return proc
        assert time.monotonic() < deadline, "no dispatcher had a delivery in flight"
        time.sleep(0.005)


@contextmanager
def _logs_on_failure(folder: Path) -> Iterator[None]:
    """A failed assertion inside carries the tail of each worker's log."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_tails(folder)}") from exc


def _settle(
    core: Core,
    secrets: dict[str, str],
    bootstrap: str,
    group: str,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    # Two processes joining a Kafka group and catching up their views: a minute or two on 2 cores.
    deadline = time.monotonic() + 150
    while True:
        with core.views.read() as tx:
            seen = sum(subscription_by_id(tx, UUID(hex=w)) is not None for w in secrets)
        # The group is asked only once the views are there, as before: an admin client each time.
        members = _members(bootstrap, group) if seen == len(secrets) else None
        if members == 2:
            return
        assert all(p.poll() is None for p in procs), "a worker died on start"
        assert time.monotonic() < deadline, (
            f"never settled: {seen} of {len(secrets)} subscriptions in the views, "
            f"{'not asked' if members is None else members} of 2 dispatchers in a Stable group"
        )
        time.sleep(0.2)


def _tails(folder: Path, lines: int = 20) -> str:
    """The last ``lines`` of each worker's log: why a process never joined is in there."""
    return "\n".join(
        f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        for log in sorted(folder.glob("*.log"))
    )


def _wait_all_final(core: Core, expected: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with core.state.read() as tx:
            rows = tx.execute("SELECT status, count(*) FROM webhook_deliveries GROUP BY status")
        counts = {str(status): int(n) for status, n in rows}
        if counts.get(stored.DELIVERED, 0) == expected:
            return
        assert time.monotonic() < deadline, counts
        time.sleep(0.2)


def test_cluster_dead_letters_reach_their_topic_and_are_redriven(
    cluster_env: dict[str, str], receiver: Receiver
) -> None:
    settings = load_settings(cluster_env)
    receiver.default_status = 410  # final at once
    with opened_core(settings) as core, running(build_workers(core, ["relay", "views", "webhooks"])):
        services = core.services
        account = services.accounts.open_account(OpenAccount(name="dlq", plan="free", at=_now())).id
        services.accounts.add_credits(AddCredits(account_id=account, amount=10_000_000, at=_now()))
        request = RequestDeployment(account_id=account, model="smollm2-135m", at=_now())
        deployment = services.deployments.request(request).id
        webhook, secret = _subscribe(core, deployment, receiver.url)
        deadline = time.monotonic() + 60
        while True:
            with core.views.read() as tx:
                if subscription_by_id(tx, webhook) is not None:
                    break
            assert time.monotonic() < deadline, "the subscription never reached the views"
            time.sleep(0.1)
        at = _now()
        replica = ReplicaCommand(deployment_id=deployment, replica="r1", base_url="http://127.0.0.1:9", at=at)
        services.deployments.start_replica(replica)
        services.deployments.activate(OnDeployment(deployment_id=deployment, at=at))
        record = _first_record(settings.kafka_bootstrap, dead_letter_topic(settings.kafka_topic))
        assert record.key == webhook.hex.encode()
        dead = msgspec.json.decode(record.value, type=stored.Delivery)
        assert (dead.status, dead.event) == (stored.DEAD, "deployment.active")
        assert [a.status_code for a in dead.attempts] == [410]
        receiver.default_status = 200
        with core.state.transaction() as tx:
            assert stored.redrive(tx, webhook, now=time.time()) == 1
        (got,) = receiver.wait_for(1, timeout=30)
        assert got.verify(secret)["type"] == "deployment.active"
        assert got.headers["webhook-id"] == dead.id


def _first_record(bootstrap: str, topic: str, timeout: float = 60) -> Any:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                if records:
                    return records[0]
        raise AssertionError(f"nothing on {topic}")
    finally:
        consumer.close()
