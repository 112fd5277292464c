"""``GET /health``: the process is up and can answer."""

from __future__ import annotations

import msgspec
from litestar import Controller, get

from modelyard import __version__


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """What the health route answers."""

    status: str
    version: str


class HealthController(Controller):
    """Liveness for load balancers, orchestrators and `modelyard serve`'s own check."""

    path = "/health"
    tags = ["health"]

    @get(operation_id="health", summary="Liveness of the API process")
    async def health(self) -> Health:
        """Answer as long as the process serves requests."""
        return Health(status="ok", version=__version__)
