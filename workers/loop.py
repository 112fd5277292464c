"""The one mechanism every background worker runs on: a step, paced by APScheduler.

A worker hands ``BackgroundLoop`` a ``step`` that does one unit of work and returns how
long to pause before the next. While the step returns 0 (more to do: the relay behind the
store, the views behind the log) the loop calls it again at once, in the same thread,
so a busy worker pays nothing for the scheduler; a pause, or at the latest a second of
back-to-back steps, hands control back to the scheduler, which runs the next step when the
pause is over. A failing step is retried after an exponential backoff (``Backoff``),
reset by the next success; ``health()`` says how the loop is doing.

APScheduler rather than a bare thread: it is already the project's scheduler (the meter
ran on it alone), and with the back-to-back steps above it adds one dispatch per pause,
not one per step.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger(__name__)
# Back-to-back steps hand control back to the scheduler at least this often, so a stop (or
# the interpreter's exit, which waits for the executor's thread) waits for one burst at most.
BURST_S = 1.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Backoff(msgspec.Struct, frozen=True, kw_only=True):
    """How long to wait after the n-th failure in a row: ``base_s`` doubled each time, up to ``cap_s``.

    The defaults retry a broken database or broker within a second, then ease off to one
    try every 30 s, so a long outage is neither hammered nor waited out for long after.
    """

    base_s: float = 0.5
    cap_s: float = 30.0

    def pause(self, failures: int) -> float:
        """The pause after ``failures`` consecutive failures (1 or more)."""
        return float(min(self.cap_s, self.base_s * 2 ** (failures - 1)))


class LoopHealth(msgspec.Struct, frozen=True, kw_only=True):
    """How a background loop is doing, for a health route or an operator."""

    name: str
    running: bool
    healthy: bool  # running, and its last step succeeded
    consecutive_failures: int
    last_error: str | None
    last_success_at: datetime | None
    pause_s: float  # the pause chosen after the last step (a backoff after a failure)


class BackgroundLoop:
    """Calls ``step`` until stopped; ``step`` returns how long to pause before the next call."""

    def __init__(
        self,
        name: str,
        step: Callable[[], float],
        *,
        backoff: Backoff | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._name, self._step = name, step
        self._backoff = backoff or Backoff()
        self._clock = clock
        # One thread runs the steps: a step is never run twice at once.
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._stopping = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._lock = threading.Lock()
        self._failures, self._pause = 0, 0.0
        self._last_error: str | None = None
        self._last_success: datetime | None = None

    def start(self) -> None:
        """Begin in the background: the first step runs at once."""
        self._scheduler.start()
        self._next_after(0.0)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the step in hand (waiting up to ``timeout`` seconds) and stop."""
        self._stopping.set()
        if self._scheduler.running:
            # Pause, then empty the job store, then shut down: removing the jobs waits for the
            # scheduler's thread to finish the pass in hand, which would fail on a job it
            # finds gone if the scheduler were shut down under it.
            self._scheduler.pause()
            self._scheduler.remove_all_jobs()
            self._scheduler.shutdown(wait=False)
        self._idle.wait(timeout)

    def health(self) -> LoopHealth:
        """The loop's state now."""
        with self._lock:
            running = self._scheduler.running and not self._stopping.is_set()
            return LoopHealth(
                name=self._name,
                running=running,
                healthy=running and self._failures == 0,
                consecutive_failures=self._failures,
                last_error=self._last_error,
                last_success_at=self._last_success,
                pause_s=self._pause,
            )

    def _next_after(self, pause: float) -> None:
        # Stopped meanwhile: the scheduler refuses the job, and nothing more is to run.
        with contextlib.suppress(SchedulerNotRunningError):
            self._scheduler.add_job(
                self._burst, "date", run_date=datetime.now(UTC) + timedelta(seconds=pause), name=self._name
            )

    def _burst(self) -> None:
        """Steps back to back while they return no pause, then the next run after the pause."""
        self._idle.clear()
        try:
            pause, until = 0.0, time.monotonic() + BURST_S
            while not self._stopping.is_set():
                pause = self._once()
                if pause > 0 or time.monotonic() >= until:
                    break
        finally:
            self._idle.set()
        if not self._stopping.is_set():
            self._next_after(pause)

    def _once(self) -> float:
        """One step, its outcome recorded: the pause it asked for, or the backoff after a failure."""
        try:
            pause = self._step()
        except Exception as exc:  # the supervisor: record what failed, back off, go on
            with self._lock:
                self._failures += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                self._pause = pause = self._backoff.pause(self._failures)
                failures = self._failures
            log.exception("%s step failed (%d in a row); next try in %.2f s", self._name, failures, pause)
            return pause
        with self._lock:
            self._failures, self._pause = 0, pause
            self._last_success = self._clock()
        return pause
