"""The webhook sender's engine: ordered per deployment, concurrent across them, retried, dead-lettered.

Deliveries are queued by ordering key (a deployment, or an account for its events); one
task per key sends its queue's head until it is delivered, dead or cancelled, and only then
the next, so a later event for a deployment waits while an earlier one is retried, and no
other key waits for it. Tries run on an event loop of their own (one thread, many
connections), at most ``concurrency`` at a time, each bounded by its timeout, so a slow or
silent receiver holds only its own queue.

A delivery is sent only under its lease in the state store (``adapters/state/webhooks.py``),
and every try that fails is recorded there before the next, and the outcome of the last;
a delivery whose row says it is already delivered, dead or cancelled (a re-delivery after a
crash or a rebalance) is not sent again. The schedule of retries (``RetrySchedule``) is
stated in the settings; after its last try a delivery is dead: its row keeps every try
(the dead-letter table), and in cluster mode it is also produced to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime

import httpx
import msgspec

from modelyard.adapters.state import webhooks as stored
from modelyard.adapters.views.db import ViewDatabase
from modelyard.adapters.webhooks.destinations import Network
from modelyard.adapters.webhooks.sender import post
from modelyard.adapters.webhooks.signing import signed_headers

log = logging.getLogger(__name__)
# A lease on a delivery lasts a try's timeout and this much more (slow database, clock skew
# between dispatchers' hosts): after it, another dispatcher may send the delivery.
LEASE_MARGIN_S = 5.0
# How often a delivery leased to another dispatcher is looked at again.
LEASE_POLL_S = 0.5


class RetrySchedule(msgspec.Struct, frozen=True, kw_only=True):
    """The pauses before the 2nd, 3rd … try (seconds); each is jittered by +-``jitter`` of itself.

    ``len(pauses) + 1`` tries in all, then the delivery is dead.
    """

    pauses: tuple[float, ...]
    jitter: float = 0.2

    @property
    def tries(self) -> int:
        """How many tries a delivery gets."""
        return len(self.pauses) + 1

    def pause(self, failed_tries: int) -> float:
        """The pause after the ``failed_tries``-th failed try (1 or more)."""
        base = self.pauses[failed_tries - 1]
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))


def parse_schedule(text: str) -> RetrySchedule:
    """``"1,5,30"`` -> pauses of 1 s, 5 s, 30 s (four tries); raises ValueError if not that."""
    pauses = tuple(float(part) for part in text.split(",") if part.strip())
    if any(p < 0 for p in pauses):
        raise ValueError("a retry pause is not negative")
    return RetrySchedule(pauses=pauses)


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """One delivery to send: its row as first recorded, and where to."""

    delivery: stored.Delivery
    url: str
    # Told when the delivery is final (the dispatcher commits its source's position by it).
    token: object = None


DeadLetters = Callable[[stored.Delivery], None]
Finished = Callable[[Job, str], None]


def _now() -> float:
    return time.time()


class DeliveryEngine:
    """Sends jobs on its own event loop thread; ``submit`` from any thread."""

    def __init__(
        self,
        state: ViewDatabase,
        *,
        schedule: RetrySchedule,
        timeout_s: float,
        allowed: Sequence[Network],
        concurrency: int,
        finished: Finished,
        dead_letters: DeadLetters | None = None,
    ) -> None:
        self._state, self._schedule, self._timeout_s = state, schedule, timeout_s
        self._allowed, self._concurrency = tuple(allowed), concurrency
        self._finished, self._dead_letters = finished, dead_letters
        self._queues: dict[str, deque[Job]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._count_lock = threading.Lock()
        self.outstanding = 0
        # Names this dispatcher's leases on deliveries (adapters/state/webhooks.py).
        self._owner = uuid.uuid4().hex

    def start(self) -> None:
        """Start the event loop thread and its HTTP client."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            limits = httpx.Limits(
                max_connections=self._concurrency, max_keepalive_connections=self._concurrency
            )
            self._client = httpx.AsyncClient(limits=limits, follow_redirects=False, timeout=self._timeout_s)
            self._slots = asyncio.Semaphore(self._concurrency)
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="webhook-deliveries", daemon=True)
        self._thread.start()
        ready.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel what is in flight (it stays owed: the source's position did not pass it) and stop."""
        loop = self._loop
        if loop is None:
            return

        async def shut() -> None:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._client is not None:
                await self._client.aclose()

        done: Future[None] = asyncio.run_coroutine_threadsafe(shut(), loop)
        try:
            done.result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout)
            self._loop = None

    def submit(self, jobs: Sequence[Job]) -> None:
        """Queue jobs behind earlier ones of their keys."""
        if not jobs:
            return
        with self._count_lock:
            self.outstanding += len(jobs)
        assert self._loop is not None, "start() first"
        self._loop.call_soon_threadsafe(self._enqueue, list(jobs))

    def _enqueue(self, jobs: list[Job]) -> None:
        for job in jobs:
            key = job.delivery.ordering_key
            queue = self._queues.get(key)
            if queue is not None:
                queue.append(job)
                continue
            self._queues[key] = deque([job])
            task = asyncio.get_running_loop().create_task(self._drain(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _drain(self, key: str) -> None:
        queue = self._queues[key]
        while queue:
            job = queue[0]
            status = await self._deliver(job)
            queue.popleft()
            with self._count_lock:
                self.outstanding -= 1
            self._finished(job, status)
        del self._queues[key]

    async def _deliver(self, job: Job) -> str:
        """Try one delivery until final; returns its final status."""
        row, secrets = await self._claimed(job.delivery)
        if row.status in stored.FINAL:
            return row.status  # sent (or given up) before a crash or a rebalance
        attempts, failed = list(row.attempts), 0
        body = row.body.encode()
        while True:
            if failed:  # re-read before a retry: the secret may have been rotated or removed
                secrets = await asyncio.to_thread(self._secrets, row)
            if not secrets:
                status = stored.CANCELLED  # the subscription was removed: nothing is owed
                break
            headers = signed_headers(row.id, datetime.now(UTC), body, secrets)
            assert self._client is not None
            assert self._slots is not None
            started = _now()
            async with self._slots:
                outcome = await post(
                    self._client, job.url, body, headers, timeout_s=self._timeout_s, allowed=self._allowed
                )
            attempts.append(
                stored.Attempt(
                    at=started,
                    status_code=outcome.status_code,
                    error=outcome.error,
                    duration_ms=outcome.duration_ms,
                )
            )
            if outcome.delivered:
                status = stored.DELIVERED
                break
            failed += 1
            if not outcome.retry or failed >= self._schedule.tries:
                status = stored.DEAD
                break
            pause = self._schedule.pause(failed)
            # The lease covers the pause and the next try: nobody else sends it meanwhile.
            lease = _now() + pause + self._timeout_s + LEASE_MARGIN_S
            await asyncio.to_thread(self._save, row, attempts, stored.PENDING, lease)
            await asyncio.sleep(pause)
        await asyncio.to_thread(self._save, row, attempts, status)
        if status == stored.DEAD:
            log.warning("webhook %s dead after %d tries: %s", row.id, len(attempts), attempts[-1].error)
            if self._dead_letters is not None:
                dead = msgspec.structs.replace(row, status=status, attempts=tuple(attempts))
                await asyncio.to_thread(self._dead_letters, dead)
        return status

    async def _claimed(self, delivery: stored.Delivery) -> tuple[stored.Delivery, list[str]]:
        """The delivery's lease (waiting while another dispatcher holds it) and its secrets."""
        while True:
            claimed = await asyncio.to_thread(self._claim, delivery)
            if claimed is not None:
                return claimed
            await asyncio.sleep(LEASE_POLL_S)

    def _claim(self, delivery: stored.Delivery) -> tuple[stored.Delivery, list[str]] | None:
        now = _now()
        with self._state.transaction() as tx:
            row = stored.claim_delivery(
                tx, delivery, self._owner, now=now, lease_s=self._timeout_s + LEASE_MARGIN_S
            )
            if row is None:
                return None
            return row, stored.live_secrets(tx, delivery.webhook_id, now=now)

    def _secrets(self, row: stored.Delivery) -> list[str]:
        with self._state.read() as tx:
            return stored.live_secrets(tx, row.webhook_id, now=_now())

    def _save(
        self,
        row: stored.Delivery,
        attempts: Sequence[stored.Attempt],
        status: str,
        lease: float | None = None,
    ) -> None:
        saved = msgspec.structs.replace(row, attempts=tuple(attempts), status=status, updated_at=_now())
        with self._state.transaction() as tx:
            stored.save_delivery(tx, saved, lease_until=lease)
