"""A rate limit holds across several processes sharing one PostgreSQL, not per process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from psycopg_pool import ConnectionPool

from modelyard.adapters.ratelimit.limiter import InProcessRateLimiter, PostgresRateLimiter, RateLimiter

pytestmark = pytest.mark.integration

WORKER = textwrap.dedent(
    """
    import sys
    from concurrent.futures import ThreadPoolExecutor
    from psycopg_pool import ConnectionPool
    from modelyard.adapters.ratelimit.limiter import PostgresRateLimiter

    dsn, key, limit, attempts = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with ConnectionPool(dsn, min_size=4, max_size=4) as pool:
        limiter = PostgresRateLimiter(pool)
        hit = lambda _: limiter.hit(key, limit=limit, window_s=3600, now=7200.0).allowed
        with ThreadPoolExecutor(4) as threads:
            print(sum(threads.map(hit, range(attempts))))
    """
)


def test_two_processes_admit_no_more_than_the_limit_together(pg_dsn: str) -> None:
    limit, attempts = 150, 200
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, pg_dsn, "key_shared", str(limit), str(attempts)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    admitted = [int(proc.communicate(timeout=120)[0].strip()) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    # 400 attempts in all against a limit of 150: exactly the limit gets through, split
    # between the processes however the race went.
    assert sum(admitted) == limit


def test_limiters_starting_together_on_a_fresh_database_all_come_up(pg_dsn: str) -> None:
    # API processes start at once and each creates the counter table; unguarded, two
    # ``CREATE TABLE IF NOT EXISTS`` collide in PostgreSQL's catalog and one startup fails.
    starters = 12
    gate = threading.Barrier(starters)
    with ConnectionPool(pg_dsn, min_size=starters, max_size=starters) as pool:
        pool.wait()

        def start(_: int) -> bool:
            gate.wait()
            limiter = PostgresRateLimiter(pool)
            return limiter.hit("key_fresh", limit=100, window_s=60, now=60.0).allowed

        with ThreadPoolExecutor(starters) as threads:
            assert all(threads.map(start, range(starters)))
        with pool.connection() as conn:
            row = conn.execute("SELECT count FROM rate_limit_window WHERE key = 'key_fresh'").fetchone()
    assert row == (starters,)


def test_headers_count_down_and_refusal_says_when_to_retry(pg_dsn: str) -> None:
    with ConnectionPool(pg_dsn, min_size=1, max_size=1) as pool:
        limiter = PostgresRateLimiter(pool)
        first = limiter.hit("key_a", limit=2, window_s=60, now=120.5)
        second = limiter.hit("key_a", limit=2, window_s=60, now=130.0)
        third = limiter.hit("key_a", limit=2, window_s=60, now=170.2)
        across_the_boundary = limiter.hit("key_a", limit=2, window_s=60, now=180.0)
        half_slid_out = limiter.hit("key_a", limit=2, window_s=60, now=210.0)
        other_key = limiter.hit("key_b", limit=2, window_s=60, now=170.2)
    assert (first.allowed, first.remaining, first.reset_s) == (True, 1, 60)
    assert (second.allowed, second.remaining) == (True, 0)
    assert not third.allowed
    # Two in the window 120-180 slide out over 180-240: one is gone (room for one) at 210.
    assert third.headers()["Retry-After"] == "40"
    assert third.headers()["X-RateLimit-Limit"] == "2"
    assert not across_the_boundary.allowed
    assert across_the_boundary.headers()["Retry-After"] == "30"
    assert half_slid_out.allowed
    assert half_slid_out.remaining == 0
    assert other_key.allowed


def _boundary_burst(limiter: RateLimiter) -> int:
    """A full burst just before a minute ends, another just after: how many get through."""
    burst = [limiter.hit("edge", limit=10, window_s=60, now=119.9) for _ in range(10)]
    after = [limiter.hit("edge", limit=10, window_s=60, now=120.0 + i / 10) for i in range(10)]
    return sum(d.allowed for d in burst + after)


def test_a_burst_on_each_side_of_a_minute_boundary_gets_the_limit_once(pg_dsn: str) -> None:
    # A fixed window admitted all twenty (ten in each minute); the sliding window ten.
    with ConnectionPool(pg_dsn, min_size=1, max_size=1) as pool:
        assert _boundary_burst(PostgresRateLimiter(pool)) == 10
    assert _boundary_burst(InProcessRateLimiter()) == 10


def test_in_process_limiter_counts_the_same_way() -> None:
    limiter = InProcessRateLimiter()
    decisions = [limiter.hit("k", limit=3, window_s=60, now=61.0 + i) for i in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0, 0]
    # Refused requests took nothing: at 120 the three admitted ones still fill the window.
    assert not limiter.hit("k", limit=3, window_s=60, now=120.0).allowed
    # By 140 a third of them has slid out: room for one.
    assert limiter.hit("k", limit=3, window_s=60, now=140.0).allowed
    assert not limiter.hit("k", limit=3, window_s=60, now=140.0).allowed
