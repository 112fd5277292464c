"""``GET /health``: the process is up and can answer, and how its background workers are doing."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import SkipValidation

from modelyard import __version__


class WorkerHealth(msgspec.Struct, frozen=True, kw_only=True):
    """One background worker of this process (relay, views, meter, reconciler)."""

    name: str
    healthy: bool
    consecutive_failures: int
    last_error: str | None


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """What the health route answers: ``degraded`` while a worker of this process is failing."""

    status: str
    version: str
    workers: list[WorkerHealth] = []


#: How the route learns its process's workers' health (none in an API-only process).
WorkersHealth = Callable[[], list[WorkerHealth]]


class HealthController(Controller):
    """Liveness for load balancers, orchestrators and `modelyard serve`'s own check."""

    path = "/health"
    tags = ["health"]

    @get(operation_id="health", summary="Liveness of the API process and its workers' health")
    async def health(self, workers_health: NamedDependency[SkipValidation[WorkersHealth]]) -> Health:
        """Answer 200 as long as the process serves requests; the body says how its workers are."""
        workers = workers_health()
        status = "ok" if all(w.healthy for w in workers) else "degraded"
        return Health(status=status, version=__version__, workers=workers)
