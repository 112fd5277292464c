"""Runs projections over a source: each event applied exactly once, however often delivered.

For each batch, one view transaction applies every event a projection has not yet seen
(its tracking row holds the last notification id applied per source partition) and moves
the tracking rows; only after that commit does the source hear that the batch is done.
A crash before the commit re-delivers the batch and nothing was applied; a crash after it
re-delivers a batch whose events the tracking rows skip.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from modelyard.adapters.eventlog.envelope import EventEnvelope
from modelyard.adapters.eventlog.sources import EventSource
from modelyard.adapters.views.db import ViewDatabase
from modelyard.adapters.views.tracking import advance, empty, tracked
from modelyard.projections.base import Positioned, Projection

__all__ = ["ProjectionRunner", "log_position", "tracked"]

Decode = Callable[[EventEnvelope], object]


def log_position(views: ViewDatabase, projections: Sequence[Projection]) -> int:
    """Where a notification-log source must resume for these projections (the slowest one)."""
    with views.transaction() as tx:
        return min((tracked(tx, p.name).get(0, 0) for p in projections), default=0)


class ProjectionRunner:
    """Feeds one source's events to several projections in shared transactions."""

    def __init__(
        self,
        views: ViewDatabase,
        source: EventSource,
        projections: Sequence[Projection],
        decode: Decode = EventEnvelope.decode,
    ) -> None:
        self._views = views
        self._source = source
        self._projections = list(projections)
        self._decode = decode
        views.ensure([statement for p in self._projections for statement in p.schema])
        # Lets callers wait until a command's events are in the views (read-your-writes).
        self._applied = threading.Condition()
        self.position = log_position(views, self._projections)

    def run_once(self, *, max_records: int = 500, timeout_s: float = 0.5) -> int:
        """Poll one batch and apply what is new in it; returns how many events were polled."""
        batch = self._source.poll(max_records, timeout_s)
        if not batch:
            return 0
        self._apply(batch)
        self._source.commit(batch)
        with self._applied:
            self.position = max(self.position, *(e.notification_id for e in batch))
            self._applied.notify_all()
        return len(batch)

    def _apply(self, batch: Sequence[EventEnvelope]) -> int:
        applied = 0
        decoded: dict[int, object] = {}
        # One runner at a time per views database, across processes, so a position read here
        # cannot be stale by the time this transaction commits.
        with self._views.transaction(lock="modelyard-projections") as tx:
            for projection in self._projections:
                positions = tracked(tx, projection.name)
                moved: dict[int, int] = {}
                fresh: list[Positioned] = []
                for index, envelope in enumerate(batch):
                    last = moved.get(envelope.partition, positions.get(envelope.partition, 0))
                    if envelope.notification_id <= last:
                        continue  # already applied: a re-delivery or a relay re-send
                    if index not in decoded:  # decoded once, however many projections want it
                        decoded[index] = self._decode(envelope)
                    fresh.append((decoded[index], envelope.notification_id))
                    moved[envelope.partition] = envelope.notification_id
                if not fresh:
                    continue
                projection.apply_batch(tx, fresh)
                applied += len(fresh)
                advance(tx, projection.name, moved)
        return applied

    def run_until_idle(self, *, timeout_s: float = 0.05, max_records: int = 500) -> int:
        """Apply batches until a poll comes back empty; returns how many events were polled."""
        total = 0
        while polled := self.run_once(max_records=max_records, timeout_s=timeout_s):
            total += polled
        return total

    def run_forever(self, stop: threading.Event) -> None:
        """Apply batches until ``stop`` is set."""
        while not stop.is_set():
            self.run_once()

    def close(self) -> None:
        """Leave the source (a Kafka consumer leaves its group at once, not on a timeout)."""
        self._source.close()

    def wait_for(self, notification_id: int, timeout_s: float) -> bool:
        """Block until the views include ``notification_id`` (or the timeout passes)."""
        with self._applied:
            return self._applied.wait_for(lambda: self.position >= notification_id, timeout_s)

    def rebuild(self) -> None:
        """Empty the projections' tables and tracking; the next runs replay from the start."""
        with self._views.transaction() as tx:
            for projection in self._projections:
                empty(tx, projection.name, projection.tables)
        self.position = 0
