"""The relay loop: keeps Kafka's events topic caught up with the store."""

from __future__ import annotations

from eventsourcing.persistence import ApplicationRecorder
from kafka import KafkaProducer

from modelyard.adapters.eventlog.relay import Relay, ensure_topic, make_producer
from modelyard.adapters.views.db import ViewDatabase
from modelyard.workers.loop import BackgroundLoop

# When the log is drained, look again this often: new events reach Kafka within ~50 ms.
IDLE_PAUSE_S = 0.05


class RelayWorker(BackgroundLoop):
    """Runs the relay in a background thread until stopped; connects to Kafka when started."""

    def __init__(
        self, recorder: ApplicationRecorder, positions: ViewDatabase, bootstrap: str, topic: str
    ) -> None:
        self._recorder, self._positions = recorder, positions
        self._bootstrap, self._topic = bootstrap, topic
        self.relay: Relay | None = None
        self._producer: KafkaProducer | None = None
        super().__init__("relay", self._step)

    def start(self) -> None:
        """Make sure the topic exists, open the producer, and begin."""
        ensure_topic(self._bootstrap, self._topic)
        self._producer = make_producer(self._bootstrap)
        self.relay = Relay(self._recorder, self._producer, self._topic, self._positions)
        super().start()

    def _step(self) -> float:
        assert self.relay is not None  # started
        return 0.0 if self.relay.relay_once() else IDLE_PAUSE_S

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the batch in hand and close the producer."""
        super().stop(timeout)
        if self._producer is not None:
            self._producer.close()
