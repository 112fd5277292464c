"""The relay: the store's notification log, in order, onto the Kafka events topic.

Each event goes out keyed by its aggregate id (one aggregate, one partition, its order
kept) with the notification id in a header. The relay records how far it got only after
Kafka acknowledged the batch, so a crash at any point re-sends at most the unacknowledged
tail, and consumers drop what they already applied by notification id. The position lives
in the state store (``modelyard.adapters.state``), which no rebuild of the views touches.
"""

from __future__ import annotations

from eventsourcing.persistence import ApplicationRecorder
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from modelyard.adapters.eventlog.partitions import record_key
from modelyard.adapters.state import positions as stored
from modelyard.adapters.views.db import ViewDatabase

# Enough partitions for a handful of consumers per group to share the work.
PARTITIONS = 4


def ensure_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    """Create the events topic with unlimited retention if it is not there."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            [
                NewTopic(
                    topic,
                    num_partitions=partitions,
                    replication_factor=1,
                    topic_configs={"retention.ms": "-1", "retention.bytes": "-1"},
                )
            ]
        )
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def make_producer(bootstrap: str) -> KafkaProducer:
    """An idempotent producer that waits for every in-sync replica."""
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        batch_size=256 * 1024,
    )


class Relay:
    """Copies new notifications to Kafka and remembers how far it got."""

    def __init__(
        self,
        recorder: ApplicationRecorder,
        producer: KafkaProducer,
        topic: str,
        positions: ViewDatabase,
        *,
        name: str = "events",
    ) -> None:
        self._recorder = recorder
        self._producer = producer
        self._topic = topic
        self._positions = positions
        self._name = name
        positions.ensure(stored.SCHEMA)

    def position(self) -> int:
        """The last notification id Kafka acknowledged."""
        with self._positions.transaction() as tx:
            return stored.position(tx, self._name)

    def relay_once(self, batch: int = 1000) -> int:
        """Send the next batch, wait for its acknowledgement, record it; returns how many."""
        start = self.position()
        rows = self._recorder.select_notifications(start=start + 1, limit=batch)
        if not rows:
            return 0
        futures = [
            self._producer.send(
                self._topic,
                key=record_key(row.originator_id),
                value=row.state,
                headers=[
                    ("notification_id", str(row.id).encode()),
                    ("topic", row.topic.encode()),
                    ("originator_version", str(row.originator_version).encode()),
                ],
            )
            for row in rows
        ]
        self._producer.flush()
        for future in futures:
            future.get(timeout=0)  # raises if Kafka refused any: the position must not move
        self._record(rows[-1].id)
        return len(rows)

    def _record(self, position: int) -> None:
        with self._positions.transaction() as tx:
            stored.record(tx, self._name, position)
