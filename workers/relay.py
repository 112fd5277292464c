"""The relay loop: keeps Kafka's events topic caught up with the store."""

from __future__ import annotations

from modelyard.adapters.eventlog.relay import Relay, ensure_topic, make_producer
from modelyard.adapters.views.db import ViewDatabase
from modelyard.domain.application import Yard
from modelyard.settings import Settings
from modelyard.workers.loop import BackgroundLoop

# When the log is drained, look again this often: new events reach Kafka within ~50 ms.
IDLE_PAUSE_S = 0.05


class RelayWorker(BackgroundLoop):
    """Runs the relay in a background thread until stopped."""

    def __init__(self, settings: Settings, yard: Yard, positions: ViewDatabase) -> None:
        ensure_topic(settings.kafka_bootstrap, settings.kafka_topic)
        self._producer = make_producer(settings.kafka_bootstrap)
        self.relay = Relay(yard.recorder, self._producer, settings.kafka_topic, positions)
        super().__init__("relay", self._step)

    def _step(self) -> float:
        return 0.0 if self.relay.relay_once() else IDLE_PAUSE_S

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the batch in hand and close the producer."""
        super().stop(timeout)
        self._producer.close()
