"""The meter: every completed minute of every deployment's runtime, charged once.

An APScheduler job (one scheduler per cluster is enough; two are harmless) walks the
deployments that may owe minutes and meters each due minute in order. The aggregate
refuses a minute already metered, so a duplicate worker, a restart or a crash between two
minutes charges nothing twice; a meter that was down catches up, minute by minute.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from apscheduler.schedulers.background import BackgroundScheduler

from modelyard.adapters.views.db import ViewDatabase
from modelyard.domain.application import Yard
from modelyard.domain.deployments.metering import due_minutes
from modelyard.domain.shared.errors import ConcurrencyConflict, DuplicateMinute
from modelyard.projections.deployments.queries import deployments_owing_minutes

log = logging.getLogger(__name__)
# Minutes complete once a minute; looking four times a minute bills within ~15 s of the end.
INTERVAL_S = 15


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Meter:
    """Meters due minutes; ``run`` is the scheduled job, callable directly in tests."""

    def __init__(self, yard: Yard, views: ViewDatabase, clock: Callable[[], datetime] = _utcnow) -> None:
        self._yard = yard
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
            for minute in due_minutes(self._yard.get_deployment(deployment_id), now):
                try:
                    self._yard.meter(deployment_id, minute, at=now)
                except (DuplicateMinute, ConcurrencyConflict):
                    break  # another meter got there first; it will carry on from here
                charged += 1
        return charged


def start_meter(meter: Meter) -> BackgroundScheduler:
    """Schedule the meter in a background thread."""
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(
        meter.run,
        "interval",
        seconds=INTERVAL_S,
        id="meter",
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC),
    )
    scheduler.start()
    return scheduler
