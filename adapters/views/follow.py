"""Read-your-writes: wait until the views have applied a command's last event.

A command returns the notification id of its last event. Every projection runner moves its
tracking rows (per source partition) in the same transaction as the rows it changes, so
once the tracking position of the partition that carries the aggregate's events reaches
that id, every view shows the command's effect. The embedded default reads the store's log
as partition 0; in a cluster the partition comes from the events topic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from uuid import UUID

from modelyard.adapters.views.db import ViewDatabase
from modelyard.adapters.views.tracking import tracked

# Views follow the store within milliseconds; a command's answer waits at most this long
# for its effect to be readable, so an agent's next GET sees what it just did.
SETTLE_TIMEOUT_S = 5.0
# Between two looks at the tracking rows: a few milliseconds of added latency at most.
POLL_S = 0.005

PartitionOf = Callable[[UUID], int]


def log_partition(_: UUID) -> int:
    """The embedded default: the store's notification log is one partition, 0."""
    return 0


class ViewsFollower:
    """Waits for the slowest of the named projections to pass a position."""

    def __init__(self, views: ViewDatabase, projections: Sequence[str], partition_of: PartitionOf) -> None:
        self._views = views
        self._projections = tuple(projections)
        self._partition_of = partition_of

    def applied(self, aggregate_id: UUID, position: int) -> bool:
        """Whether every projection has applied the events up to ``position`` of this aggregate."""
        partition = self._partition_of(aggregate_id)
        with self._views.read() as tx:
            return all(tracked(tx, name).get(partition, 0) >= position for name in self._projections)

    def settle(self, aggregate_id: UUID, position: int, timeout_s: float = SETTLE_TIMEOUT_S) -> bool:
        """Block until ``applied`` (True) or the timeout passes (False: the answer may lag)."""
        deadline = time.monotonic() + timeout_s
        while not self.applied(aggregate_id, position):
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)
        return True
