"""The balance guard: every few seconds, each deployment whose owner chose what it allows
when the account runs low gets the step due now (``LowBalanceService.guard``).

It reads the candidates from the views (``projections/low_balance``) and decides each from
the aggregates, never from memory: restarted, or run beside another guard, it takes each
step once (the loser of a race decides again on the new state and finds nothing due).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from modelyard.adapters.views.db import ViewDatabase
from modelyard.domain.deployments.low_balance_service import Guard, LowBalanceService, Step
from modelyard.domain.shared.errors import DomainError
from modelyard.projections.low_balance.queries import guarded_deployments
from modelyard.workers.loop import BackgroundLoop

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class BalanceGuard:
    """One pass over the guarded deployments; ``run_once`` returns the steps it took."""

    def __init__(
        self, service: LowBalanceService, views: ViewDatabase, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self._service, self._views, self._clock = service, views, clock

    def run_once(self) -> list[Step]:
        """Take every step due now."""
        with self._views.read() as tx:
            candidates = guarded_deployments(tx)
        taken: list[Step] = []
        for deployment_id in candidates:
            try:
                step = self._service.guard(Guard(deployment_id=deployment_id, at=self._clock()))
            except DomainError as exc:
                # Not enough credit to wake it yet, or the state moved: the next pass decides again.
                log.info("balance guard %s: %s", deployment_id, exc.message)
                continue
            if step is not None:
                log.info("balance guard %s: %s (%s)", deployment_id, step.move, step.reason)
                taken.append(step)
        return taken


class BalanceGuardWorker(BackgroundLoop):
    """Runs the guard every ``interval_s`` seconds in a background thread until stopped."""

    def __init__(self, guard: BalanceGuard, interval_s: float) -> None:
        self.guard, self._interval_s = guard, interval_s
        super().__init__("balance_guard", self._step)

    def _step(self) -> float:
        self.guard.run_once()
        return self._interval_s
