"""The background loop every worker runs on: backoff after failures, recovery, health, stop."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from modelyard.workers.loop import BackgroundLoop, Backoff, LoopHealth

NOON = datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_backoff_doubles_from_its_base_up_to_its_cap() -> None:
    assert [Backoff().pause(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert [Backoff(base_s=0.01, cap_s=0.04).pause(n) for n in (1, 2, 3, 4, 5)] == [
        0.01,
        0.02,
        0.04,
        0.04,
        0.04,
    ]


def test_a_failing_step_backs_off_recovers_and_says_so() -> None:
    seen: list[LoopHealth] = []  # the loop's health as each step begins
    recovered = threading.Event()

    def step() -> float:
        seen.append(loop.health())
        if len(seen) <= 4:
            raise RuntimeError(f"broken {len(seen)}")
        if len(seen) == 6:
            recovered.set()
        return 0.001

    loop = BackgroundLoop("flaky", step, backoff=Backoff(base_s=0.01, cap_s=0.04), clock=lambda: NOON)
    loop.start()
    try:
        assert recovered.wait(30), seen
        # Read while running: the loop is healthy again, the last error kept for the record.
        now = loop.health()
    finally:
        loop.stop(timeout=10)
    assert [h.pause_s for h in seen[1:5]] == [0.01, 0.02, 0.04, 0.04]
    assert [h.consecutive_failures for h in seen[:6]] == [0, 1, 2, 3, 4, 0]
    assert [h.healthy for h in seen[:6]] == [True, False, False, False, False, True]
    assert seen[4].last_error == "RuntimeError: broken 4"
    assert seen[4].last_success_at is None
    assert (now.name, now.running, now.healthy, now.consecutive_failures) == ("flaky", True, True, 0)
    assert now.last_success_at == NOON
    assert now.pause_s == 0.001
    assert now.last_error == "RuntimeError: broken 4"
    stopped = loop.health()
    assert (stopped.running, stopped.healthy) == (False, False)


def test_steps_run_back_to_back_until_stopped_and_none_after() -> None:
    calls = 0
    busy = threading.Event()

    def step() -> float:
        nonlocal calls
        calls += 1
        if calls == 100:
            busy.set()
        return 0.0  # always more to do, like the views polling their source

    loop = BackgroundLoop("busy", step)
    loop.start()
    assert busy.wait(30)
    loop.stop(timeout=10)
    after_stop = calls
    assert not loop.health().running
    # A second stop is harmless, and no step ran once stop returned.
    loop.stop(timeout=1)
    assert calls == after_stop


@pytest.mark.parametrize("pause", [0.0, 3600.0])
def test_stop_returns_whether_a_step_runs_or_a_long_pause_is_pending(pause: float) -> None:
    ran = threading.Event()

    def step() -> float:
        ran.set()
        return pause

    loop = BackgroundLoop("paused", step)
    loop.start()
    assert ran.wait(30)
    loop.stop(timeout=10)
    assert not loop.health().running
