"""The relay loop: keeps Kafka's events topic caught up with the store."""

from __future__ import annotations

import logging
import threading
import time

from modelyard.adapters.eventlog.relay import Relay, ensure_topic, make_producer
from modelyard.adapters.views.db import ViewDatabase
from modelyard.domain.application import Yard
from modelyard.settings import Settings

log = logging.getLogger(__name__)
# When the log is drained, look again this often: new events reach Kafka within ~50 ms.
IDLE_PAUSE_S = 0.05
RETRY_PAUSE_S = 1.0


class RelayWorker:
    """Runs the relay in a background thread until stopped."""

    def __init__(self, settings: Settings, yard: Yard, positions: ViewDatabase) -> None:
        ensure_topic(settings.kafka_bootstrap, settings.kafka_topic)
        self._producer = make_producer(settings.kafka_bootstrap)
        self.relay = Relay(yard.recorder, self._producer, settings.kafka_topic, positions)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="relay", daemon=True)

    def start(self) -> None:
        """Begin relaying in the background."""
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.relay.relay_once():
                    time.sleep(IDLE_PAUSE_S)
            except Exception:  # a supervisor loop: record, pause, go on
                log.exception("relay batch failed; retrying")
                time.sleep(RETRY_PAUSE_S)

    def stop(self) -> None:
        """Stop after the batch in hand and close the producer."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._producer.close()
