"""Usage records off the request path: batched into one store transaction every few ms.

A request's record is queued when it finishes and saved with the others of its batch in
one transaction ``FLUSH_S`` later (and at shutdown), so the store sees one write per batch
instead of one per request. What a crash of this API process can lose is the last
``FLUSH_S`` of records; nothing is ever counted twice (each record's id is unique).
"""

from __future__ import annotations

import anyio

from modelyard.domain.usage.service import RecordUsage, UsageService

# Short enough that usage shows up at once to a person, long enough to batch under load.
FLUSH_S = 0.05


class UsageWriter:
    """Queues usage records and saves them in batches through the usage service."""

    def __init__(self, usage: UsageService) -> None:
        self._usage = usage
        self._pending: list[RecordUsage] = []
        self._stopped: anyio.Event | None = None

    def submit(self, record: RecordUsage) -> None:
        """Queue one record (never blocks the request)."""
        self._pending.append(record)

    async def run(self) -> None:
        """Flush every ``FLUSH_S`` until stopped, then once more."""
        # Made here, inside the serving loop, as anyio wants its events made.
        stopped = self._stopped = anyio.Event()
        while not stopped.is_set():
            with anyio.move_on_after(FLUSH_S):
                await stopped.wait()
            await self.flush()

    def stop(self) -> None:
        """Make ``run`` flush a last time and return."""
        if self._stopped is not None:
            self._stopped.set()

    async def flush(self) -> None:
        """Save what is queued in one transaction."""
        batch, self._pending = self._pending, []
        if batch:
            await anyio.to_thread.run_sync(self._usage.record, batch)
