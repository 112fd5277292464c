"""What the HTTP edge needs from the rest of the system, built by the composition root."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from uuid import UUID

from modelyard.adapters.ratelimit.limiter import RateLimiter
from modelyard.adapters.views.db import ViewDatabase
from modelyard.domain.application import Yard
from modelyard.projections.deployments.queries import deployment_version
from modelyard.settings import Settings

# Views follow the store within milliseconds; a command's answer waits at most this long
# for its effect to be readable, so an agent's next GET sees what it just did.
SETTLE_TIMEOUT_S = 5.0


@dataclass
class Backend:
    """The write side, the views, the state store, and the shared limits, for every route.

    ``views`` are what replay rebuilds from events; ``state`` (idempotency records, shown-once
    secrets, rate-limit windows, the relay position) is what it must never touch.
    """

    settings: Settings
    yard: Yard
    views: ViewDatabase
    state: ViewDatabase
    limiter: RateLimiter
    started: float = field(default_factory=time.monotonic)

    def settle(self, deployment_id: UUID, version: int) -> bool:
        """Wait until the deployments view shows ``deployment_id`` at ``version`` or later."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while time.monotonic() < deadline:
            with self.views.read() as tx:
                seen = deployment_version(tx, deployment_id)
            if seen is not None and seen >= version:
                return True
            time.sleep(0.01)
        return False
