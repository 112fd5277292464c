"""Usage records off the request path: batched into one store transaction every few ms.

A request's record is queued when it finishes and saved with the others of its batch in
one transaction ``FLUSH_S`` after the batch's first (and at shutdown), so the store sees one
write per batch instead of one per request. With nothing queued the writer sleeps until a
record comes: an idle server does not wake for it. What a crash of this API process can
lose is the last ``FLUSH_S`` of records; nothing is ever counted twice (each record's id
is unique).
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
        self._wake: anyio.Event | None = None
        self._stopping = False

    def submit(self, record: RecordUsage) -> None:
        """Queue one record, from the event loop (never blocks the request)."""
        self._pending.append(record)
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """Flush ``FLUSH_S`` after each batch's first record until stopped, then once more."""
        while not self._stopping:
            # Made here, inside the serving loop, as anyio wants its events made.
            self._wake = wake = anyio.Event()
            if not self._pending:
                await wake.wait()  # a record, or stop
            if not self._stopping:
                await anyio.sleep(FLUSH_S)
            await self.flush()
        await self.flush()

    def stop(self) -> None:
        """Make ``run`` flush a last time and return."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    async def flush(self) -> None:
        """Save what is queued in one transaction."""
        batch, self._pending = self._pending, []
        if batch:
            await anyio.to_thread.run_sync(self._usage.record, batch)
