"""Which partition of the events topic an aggregate's events travel in.

The relay keys every record by its aggregate's id, and kafka-python's default
partitioner puts a key in partition ``murmur2(key) % partitions``. Readers that must know
where one aggregate's events are (read-your-writes, the finance replay) ask here, so the
rule is written once, beside the relay that applies it.
"""

from __future__ import annotations

import threading
from uuid import UUID

from kafka import KafkaConsumer
from kafka.partitioner import murmur2


def record_key(aggregate_id: UUID | str) -> bytes:
    """The Kafka key of every record of one aggregate (the relay sends it)."""
    return str(aggregate_id).encode()


def partition_for(aggregate_id: UUID, partitions: int) -> int:
    """The partition kafka-python's default partitioner gives the aggregate's key."""
    return int(murmur2(record_key(aggregate_id)) & 0x7FFFFFFF) % partitions


class TopicPartitions:
    """The events topic's partition count, asked of the broker on first use and kept."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._bootstrap, self._topic = bootstrap, topic
        self._count: int | None = None
        self._lock = threading.Lock()

    def count(self) -> int:
        """How many partitions the topic has; raises if the broker does not know the topic."""
        with self._lock:
            if self._count is None:
                consumer = KafkaConsumer(bootstrap_servers=self._bootstrap)
                try:
                    found = consumer.partitions_for_topic(self._topic) or set()
                finally:
                    consumer.close()
                if not found:
                    raise ValueError(f"Kafka has no topic {self._topic!r} yet: is the relay running?")
                self._count = len(found)
            return self._count

    def of(self, aggregate_id: UUID) -> int:
        """The partition of this aggregate's events."""
        return partition_for(aggregate_id, self.count())
