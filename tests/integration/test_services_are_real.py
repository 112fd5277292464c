"""Proof that the services under the tests are the real ones: writes and reads go through."""

from __future__ import annotations

import psycopg
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

pytestmark = pytest.mark.integration


def test_postgres_round_trip(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        conn.execute("CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL)")
        conn.execute("INSERT INTO notes (body) VALUES (%s), (%s)", ["one", "two"])
        conn.commit()
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT body FROM notes ORDER BY id").fetchall()
    assert version is not None
    assert int(str(version[0]).split(".")[0]) >= 13
    assert rows == [("one",), ("two",)]


def test_postgres_rolls_back_what_is_not_committed(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (v int)")
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1 / 0")
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()


def test_kafka_idempotent_producer_and_committing_group(kafka_bootstrap: str, topic_name: str) -> None:
    _create_topic(kafka_bootstrap, topic_name, partitions=2)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    for i in range(20):
        producer.send(topic_name, key=f"k{i % 3}".encode(), value=f"v{i}".encode())
    producer.flush()
    producer.close()

    group = f"g-{topic_name}"
    first = KafkaConsumer(
        topic_name,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=10_000,
    )
    seen: list[tuple[bytes, bytes]] = []
    for record in first:
        seen.append((record.key, record.value))
        if len(seen) == 12:
            break
    first.commit()
    first.close()

    # A second member of the same group resumes after the committed offsets, losing nothing.
    second = KafkaConsumer(
        topic_name,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=5_000,
    )
    rest = [(r.key, r.value) for r in second]
    second.close()

    values = sorted(v for _, v in seen + rest)
    assert values == sorted(f"v{i}".encode() for i in range(20))
    # Per key, order is the order of sending (one key lives on one partition).
    by_key: dict[bytes, list[int]] = {}
    for key, value in seen + rest:
        by_key.setdefault(key, []).append(int(value[1:]))
    assert all(order == sorted(order) for order in by_key.values())


def test_kafka_committed_offsets_are_stored_by_the_broker(kafka_bootstrap: str, topic_name: str) -> None:
    _create_topic(kafka_bootstrap, topic_name, partitions=1)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    for i in range(5):
        producer.send(topic_name, value=str(i).encode())
    producer.close()
    group = f"g-{topic_name}"
    consumer = KafkaConsumer(
        topic_name,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=10_000,
    )
    consumed = [r.value for r in consumer]
    consumer.commit()
    partition = TopicPartition(topic_name, 0)
    assert consumer.committed(partition) == 5
    consumer.close()
    assert consumed == [b"0", b"1", b"2", b"3", b"4"]
