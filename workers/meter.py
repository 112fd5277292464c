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

from modelyard.adapters.views.db import ViewDatabase
from modelyard.domain.application import Yard
from modelyard.domain.deployments.metering import due_minutes
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import ConcurrencyConflict, DuplicateMinute
from modelyard.workers.loop import BackgroundLoop

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

    def candidates(self) -> list[str]:
        """Deployments that may owe minutes: live ones, and ended ones not metered to their end."""
        with self._views.transaction() as tx:
            rows = tx.execute(
                "SELECT id FROM deployments WHERE state IN ('running', 'scaling', 'degraded')"
                " OR (state IN ('scaled_to_zero', 'teardown', 'destroyed', 'failed')"
                " AND (metered_through IS NULL OR metered_through < updated_at))"
            )
        return [str(row[0]) for row in rows]

    def run(self) -> int:
        """Meter every due minute now; returns how many minutes were charged."""
        now = self._clock()
        charged = 0
        for public in self.candidates():
            deployment_id = ids.parse_deployment_id(public)
            for minute in due_minutes(self._yard.get_deployment(deployment_id), now):
                try:
                    self._yard.meter(deployment_id, minute, at=now)
                except (DuplicateMinute, ConcurrencyConflict):
                    break  # another meter got there first; it will carry on from here
                charged += 1
        return charged


def start_meter(meter: Meter) -> BackgroundLoop:
    """Run the meter now and every ``INTERVAL_S`` after, in a background loop."""

    def step() -> float:
        charged = meter.run()
        if charged:
            log.info("metered %d minutes", charged)
        return INTERVAL_S

    loop = BackgroundLoop("meter", step)
    loop.start()
    return loop
