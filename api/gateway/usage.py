"""Usage records off the request path: batched into one store transaction every few ms.

A request's record is queued when it finishes and saved with the others of its batch in
one transaction ``FLUSH_S`` later (and at shutdown), so the store sees one write per batch
instead of one per request. What a crash of this API process can lose is the last
``FLUSH_S`` of records; nothing is ever counted twice (each record's id is unique).
"""

from __future__ import annotations

import anyio

from modelyard.api.backend import Backend
from modelyard.projections.metrics.records import UsageRecorded

# Short enough that usage shows up at once to a person, long enough to batch under load.
FLUSH_S = 0.05


class UsageWriter:
    """Queues usage records and saves them in batches."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._pending: list[UsageRecorded] = []
        self._stopped = anyio.Event()

    def submit(self, record: UsageRecorded) -> None:
        """Queue one record (never blocks the request)."""
        self._pending.append(record)

    async def run(self) -> None:
        """Flush every ``FLUSH_S`` until stopped, then once more."""
        while not self._stopped.is_set():
            with anyio.move_on_after(FLUSH_S):
                await self._stopped.wait()
            await self.flush()

    def stop(self) -> None:
        """Make ``run`` flush a last time and return."""
        self._stopped.set()

    async def flush(self) -> None:
        """Save what is queued in one transaction."""
        batch, self._pending = self._pending, []
        if batch:
            await anyio.to_thread.run_sync(lambda: self._backend.yard.record(*batch))
