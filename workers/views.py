"""The projections a modelyard deployment keeps, and the loop that keeps them current."""

from __future__ import annotations

import logging
import threading
import time

from modelyard.adapters.eventlog.sources import EventSource, KafkaSource, NotificationLogSource
from modelyard.adapters.views.db import ViewDatabase
from modelyard.domain.application import Yard
from modelyard.projections.balances.projection import BalancesProjection
from modelyard.projections.base import Projection
from modelyard.projections.deployments.projection import DeploymentsProjection
from modelyard.projections.keys.projection import KeysProjection
from modelyard.projections.metrics.projection import MetricsProjection
from modelyard.settings import Settings
from modelyard.workers.projection_runner import ProjectionRunner, log_position

log = logging.getLogger(__name__)
VIEWS_GROUP = "modelyard-views"
# After a failure, wait before polling again so a broken database is not hammered.
RETRY_PAUSE_S = 1.0


def all_projections() -> list[Projection]:
    """Every view the API and workers read."""
    return [DeploymentsProjection(), BalancesProjection(), KeysProjection(), MetricsProjection()]


def views_source(settings: Settings, yard: Yard, views: ViewDatabase) -> EventSource:
    """Kafka in cluster mode, the store's own log in the embedded default."""
    if settings.uses_kafka:
        return KafkaSource(settings.kafka_bootstrap, settings.kafka_topic, VIEWS_GROUP)
    return NotificationLogSource(yard.recorder, start_after=log_position(views, all_projections()))


class ViewsWorker:
    """Runs the projections in a background thread until stopped."""

    def __init__(self, settings: Settings, yard: Yard, views: ViewDatabase) -> None:
        self.runner = ProjectionRunner(views, views_source(settings, yard, views), all_projections())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="views", daemon=True)

    def start(self) -> None:
        """Begin folding events in the background."""
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.runner.run_once(timeout_s=0.2)
            except Exception:  # a supervisor loop: record, pause, go on
                log.exception("projection batch failed; retrying")
                time.sleep(RETRY_PAUSE_S)

    def stop(self) -> None:
        """Finish the batch in hand and stop."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
