"""The projections a modelyard deployment keeps, and the loop that keeps them current."""

from __future__ import annotations

from modelyard.adapters.eventlog.sources import EventSource, KafkaSource, NotificationLogSource
from modelyard.adapters.views.db import ViewDatabase
from modelyard.domain.application import Yard
from modelyard.projections.balances.projection import BalancesProjection
from modelyard.projections.base import Projection
from modelyard.projections.deployments.projection import DeploymentsProjection
from modelyard.projections.keys.projection import KeysProjection
from modelyard.projections.metrics.projection import MetricsProjection
from modelyard.settings import Settings
from modelyard.workers.loop import BackgroundLoop
from modelyard.workers.projection_runner import ProjectionRunner, log_position

VIEWS_GROUP = "modelyard-views"


def all_projections() -> list[Projection]:
    """Every view the API and workers read."""
    return [DeploymentsProjection(), BalancesProjection(), KeysProjection(), MetricsProjection()]


def views_source(settings: Settings, yard: Yard, views: ViewDatabase) -> EventSource:
    """Kafka in cluster mode, the store's own log in the embedded default."""
    if settings.uses_kafka:
        return KafkaSource(settings.kafka_bootstrap, settings.kafka_topic, VIEWS_GROUP)
    return NotificationLogSource(yard.recorder, start_after=log_position(views, all_projections()))


class ViewsWorker(BackgroundLoop):
    """Runs the projections in a background thread until stopped."""

    def __init__(self, settings: Settings, yard: Yard, views: ViewDatabase) -> None:
        self.runner = ProjectionRunner(views, views_source(settings, yard, views), all_projections())
        super().__init__("views", self._step)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the batch in hand, then leave the source."""
        super().stop(timeout)
        self.runner.close()

    def _step(self) -> float:
        self.runner.run_once(timeout_s=0.2)
        return 0.0  # the poll itself waits for events: no pause between batches
