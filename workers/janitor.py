"""The state janitor: shown-once secrets of ended deployments forgotten, expired records pruned.

However a deployment ends — destroyed through the API, torn down by the reconciler for lack
of credit, failed while provisioning — its instance key will never be shown again, so its
secret is deleted from the state store (which, on SQLite, overwrites it in the file). One
pass every ``INTERVAL_S`` covers every path at once, rather than each path remembering to.
The same pass deletes a secret no deployment ever came of (its provision died before
recording it, and no retry took it up) once ``ORPHAN_AFTER_S`` has passed, idempotency
records past their retention, and, in cluster mode, rate-limit windows no request reads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from modelyard.adapters.ratelimit.limiter import prune_windows
from modelyard.adapters.state import idempotency, secrets
from modelyard.adapters.views.db import ViewDatabase
from modelyard.projections.deployments.queries import deployment_state
from modelyard.workers.loop import BackgroundLoop

log = logging.getLogger(__name__)
# A secret goes within this long of its deployment ending (the API's destroy forgets at once).
INTERVAL_S = 1.0
#: States after which an instance key is never shown again.
FINISHED = frozenset({"teardown", "destroyed", "failed"})
#: A secret whose deployment the views have not shown for this long never had one.
ORPHAN_AFTER_S = 3600.0
# Rate-limit windows are read for two windows at most; older rows only take room.
WINDOWS_KEPT_S = 180.0


class Janitor:
    """One sweep of the state store; ``sweep`` is the step, callable directly in tests."""

    def __init__(
        self,
        state: ViewDatabase,
        views: ViewDatabase,
        *,
        windows: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``windows``: the state store holds the rate-limit windows (cluster mode)."""
        self._state, self._views, self._windows, self._clock = state, views, windows, clock

    def done_with(self) -> list[secrets.Held]:
        """The secrets that can never be shown again."""
        now = self._clock()
        with self._state.read() as tx:
            held = secrets.held(tx)
        done: list[secrets.Held] = []
        with self._views.read() as tx:
            for secret in held:
                found = deployment_state(tx, secret.deployment_id)
                orphan = found is None and (secret.kept_at or 0.0) < now - ORPHAN_AFTER_S
                if orphan or (found is not None and found.state in FINISHED):
                    done.append(secret)
        return done

    def sweep(self) -> int:
        """Forget what is done with and prune what expired; returns how many secrets went."""
        done = self.done_with()
        now = self._clock()
        with self._state.transaction() as tx:
            for secret in done:
                secrets.forget(tx, secret.deployment_id)
            pruned = idempotency.prune(tx, now=now)
            if self._windows:
                prune_windows(tx, before=now - WINDOWS_KEPT_S)
        if done or pruned:
            log.info("forgot %d instance secrets, pruned %d idempotency records", len(done), pruned)
        return len(done)


class JanitorWorker(BackgroundLoop):
    """Runs a sweep every ``INTERVAL_S`` in a background thread until stopped."""

    def __init__(self, janitor: Janitor) -> None:
        self.janitor = janitor
        super().__init__("janitor", self._step)

    def _step(self) -> float:
        self.janitor.sweep()
        return INTERVAL_S
