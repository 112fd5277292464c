"""The meter: every completed minute of every deployment's runtime, charged once.

A background loop (one per cluster is enough; two are harmless) takes the deployments
that may owe minutes from the views and meters their due minutes, oldest first, one
transaction per account (``DeploymentsService.meter_due``): per tick it reads each
account and deployment once (cached by the store, fast-forwarded by a few rows) and
writes each minute's ``MinuteMetered`` and ``CreditsCharged`` at their aggregates' next
versions. A duplicate worker's transaction conflicts and writes nothing, a crash writes a
whole transaction or none of it, and a minute already metered is no longer due, so
nothing is charged twice; a meter that was down catches up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from modelyard.adapters.views.db import ViewDatabase
from modelyard.domain.deployments.service import DeploymentsService, MeterDue
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
        """Meter every due minute now, one transaction per account; returns how many were charged."""
        candidates = tuple(self.candidates())
        if not candidates:
            return 0
        return self._deployments.meter_due(MeterDue(deployment_ids=candidates, at=self._clock()))


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
