"""The meter: every completed minute of every deployment's runtime, charged once.

A background loop (one per cluster is enough; two are harmless) walks the deployments
that may owe minutes and meters each due minute in order. The aggregate refuses a minute
already metered, so a duplicate worker, a restart or a crash between two minutes charges
nothing twice; a meter that was down catches up, minute by minute.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from modelyard.adapters.views.db import ViewDatabase
from modelyard.domain.deployments.metering import due_minutes
from modelyard.domain.deployments.service import DeploymentsService, MeterMinute
from modelyard.domain.shared.errors import ConcurrencyConflict, DuplicateMinute
from modelyard.projections.deployments.queries import deployments_owing_minutes
from modelyard.workers.loop import BackgroundLoop

log = logging.getLogger(__name__)
# Minutes complete once a minute; looking four times a minute bills within ~15 s of the end.
INTERVAL_S = 15


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Meter:
    """Meters due minutes; ``run`` is the scheduled job, callable directly in tests."""

    def __init__(
        self, deployments: DeploymentsService, views: ViewDatabase, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self._deployments = deployments
        self._views = views
        self._clock = clock

    def candidates(self) -> list[UUID]:
        """Deployments that may owe minutes: live ones, and ended ones not metered to their end."""
        with self._views.transaction() as tx:
            return deployments_owing_minutes(tx)

    def run(self) -> int:
        """Meter every due minute now; returns how many minutes were charged."""
        now = self._clock()
        charged = 0
        for deployment_id in self.candidates():
            for minute in due_minutes(self._deployments.get(deployment_id), now):
                try:
                    self._deployments.meter(MeterMinute(deployment_id=deployment_id, minute=minute, at=now))
                except (DuplicateMinute, ConcurrencyConflict):
                    break  # another meter got there first; it will carry on from here
                charged += 1
        return charged


class MeterWorker(BackgroundLoop):
    """Runs the meter every ``INTERVAL_S`` in a background thread until stopped."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        super().__init__("meter", self._step)

    def _step(self) -> float:
        charged = self.meter.run()
        if charged:
            log.info("metered %d minutes", charged)
        return INTERVAL_S
