"""Cold starts: a request to a deployment scaled to zero wakes it and is held until it serves.

The API and the workers may be different processes, so the gateway does not start
replicas itself: it records ``WakeRequested`` (through the deployments service, which holds
credit for the capacity again) and the reconciler, wherever it runs, starts the replicas and
activates the deployment. The request is held meanwhile, its deployment's state read from
the views every ``POLL_S``; once it serves, the forwarder's cached routes are dropped and the
request goes on as any other. Past ``wait_s`` it is answered ``INSTANCE_STARTING`` (503) with
``Retry-After``: the wake stays recorded, so the retry finds the deployment starting or up.
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from uuid import UUID

import anyio

from modelyard.adapters.views.db import ViewDatabase
from modelyard.api.errors import InstanceStarting
from modelyard.api.gateway.forwarder import Forwarder
from modelyard.domain.deployments.service import DeploymentsService, OnDeployment
from modelyard.domain.shared.errors import IllegalTransition, InstanceNotRunning
from modelyard.projections.deployments.queries import deployment_state

#: States a request is held in rather than refused.
COLD = ("scaled_to_zero", "waking")
#: States in which replicas answer.
SERVING = ("running", "scaling", "degraded")
# A view read is one indexed row; four a second makes a held request go on within a quarter
# second of the deployment serving, at no cost worth naming.
POLL_S = 0.25
# What a client held past the bound is told to wait: a cold start takes seconds, not minutes.
RETRY_AFTER_S = 5


class ColdStarter:
    """Wakes deployments scaled to zero and holds their requests until they serve."""

    def __init__(
        self, deployments: DeploymentsService, views: ViewDatabase, forwarder: Forwarder, wait_s: float
    ) -> None:
        self._deployments, self._views, self._forwarder = deployments, views, forwarder
        self._wait_s = wait_s

    def _state(self, dep_id: UUID) -> str | None:
        with self._views.read() as tx:
            found = deployment_state(tx, dep_id)
        return None if found is None else found.state

    def _wake(self, dep_id: UUID) -> None:
        # Another request (here or in another API process) may have woken it first.
        with contextlib.suppress(IllegalTransition):
            self._deployments.wake(OnDeployment(deployment_id=dep_id, at=datetime.now(UTC)))

    async def ready(self, dep_id: UUID, shown: str) -> None:
        """Return once the deployment serves, waking it if it sleeps; 503 past the bound."""
        deadline = time.monotonic() + self._wait_s
        woken = False
        while True:
            state = await anyio.to_thread.run_sync(self._state, dep_id)
            if state in SERVING:
                self._forwarder.forget(dep_id)
                return
            if state == "scaled_to_zero" and not woken:
                await anyio.to_thread.run_sync(self._wake, dep_id)
                woken = True
            elif state not in COLD:
                raise InstanceNotRunning(f"{shown} is {state} and cannot be woken.")
            if time.monotonic() >= deadline:
                raise InstanceStarting(
                    f"{shown} is starting from zero replicas and is not serving yet; retry shortly.",
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                )
            await anyio.sleep(POLL_S)
