"""The concurrency limiter's contract, run against both implementations: at most ``limit``
leases per key, a released lease frees its slot, keys do not share slots, and (PostgreSQL)
two pools (two API processes) share one count and an expired lease stops counting."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psycopg_pool import ConnectionPool

from modelyard.adapters.concurrency.limiter import (
    ConcurrencyLimiter,
    InProcessConcurrency,
    PostgresConcurrency,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def pools(pg_dsn: str) -> Iterator[tuple[ConnectionPool, ConnectionPool]]:
    first, second = ConnectionPool(pg_dsn, open=True), ConnectionPool(pg_dsn, open=True)
    yield first, second
    first.close()
    second.close()


@pytest.fixture(params=["in-process", "postgres"])
def limiter(request: pytest.FixtureRequest, pg_dsn: str) -> Iterator[ConcurrencyLimiter]:
    if request.param == "in-process":
        yield InProcessConcurrency()
        return
    pool = ConnectionPool(pg_dsn, open=True)
    yield PostgresConcurrency(pool)
    pool.close()


def test_at_most_limit_leases_and_a_release_frees_a_slot(limiter: ConcurrencyLimiter) -> None:
    leases = [limiter.acquire("dep-a", 2) for _ in range(3)]
    assert leases[0] is not None
    assert leases[1] is not None
    assert leases[2] is None
    assert limiter.acquire("dep-b", 2) is not None  # another deployment has its own slots
    limiter.release("dep-a", leases[0])
    assert limiter.acquire("dep-a", 2) is not None
    assert limiter.acquire("dep-a", 2) is None


def test_two_processes_share_one_count_and_an_expired_lease_stops_counting(
    pools: tuple[ConnectionPool, ConnectionPool],
) -> None:
    one, two = PostgresConcurrency(pools[0]), PostgresConcurrency(pools[1])
    assert one.acquire("dep", 2) is not None
    assert two.acquire("dep", 2) is not None
    assert one.acquire("dep", 2) is None
    assert two.acquire("dep", 2) is None
    # A process that died holding leases: they lapse at their expiry (here moved to the past).
    with pools[0].connection() as conn:
        conn.execute("UPDATE concurrency_leases SET expires_at = 0")
    assert two.acquire("dep", 2) is not None
