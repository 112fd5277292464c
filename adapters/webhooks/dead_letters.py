"""The cluster's dead-letter topic: every delivery that ran out of tries, with all its tries.

The state store's delivery rows are the dead letters an operator lists and re-drives (in
both modes); in a cluster each is also produced here, keyed by its subscription, so other
consumers (alerting, an archive) can follow them.
"""

from __future__ import annotations

import threading

import msgspec
from kafka import KafkaProducer

from modelyard.adapters.eventlog.relay import ensure_topic, make_producer
from modelyard.adapters.state.webhooks import Delivery

_encode = msgspec.json.Encoder()


def dead_letter_topic(events_topic: str) -> str:
    """The dead-letter topic beside an events topic."""
    return f"{events_topic}.webhooks.dead"


class KafkaDeadLetters:
    """Produces dead deliveries to the dead-letter topic; connects on first use."""

    def __init__(self, bootstrap: str, events_topic: str) -> None:
        self._bootstrap, self.topic = bootstrap, dead_letter_topic(events_topic)
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def __call__(self, delivery: Delivery) -> None:
        """Send one dead delivery and wait for Kafka to acknowledge it."""
        with self._lock:
            if self._producer is None:
                ensure_topic(self._bootstrap, self.topic, partitions=1)
                self._producer = make_producer(self._bootstrap)
            producer = self._producer
        future = producer.send(
            self.topic, key=delivery.webhook_id.hex.encode(), value=_encode.encode(delivery)
        )
        future.get(timeout=30)

    def close(self) -> None:
        """Close the producer, if it was opened."""
        if self._producer is not None:
            self._producer.close()
