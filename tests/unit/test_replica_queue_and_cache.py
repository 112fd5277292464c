"""A llama.cpp replica's admission queue and its prompt cache's bookkeeping."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from modelyard.adapters.engines.backends import SimulatedBackend
from modelyard.adapters.engines.prompt_cache import PromptCache, SavedState, common_prefix
from modelyard.adapters.engines.replica import Admission, Busy, Replica


def _state(tokens: list[int], size: int) -> SavedState:
    return SavedState(np.asarray(tokens, dtype=np.intc), bytes(size), size)


def test_the_longest_shared_prefix_wins_and_the_bound_holds() -> None:
    cache = PromptCache(capacity_bytes=250, min_tokens=1)
    cache.put(_state([1, 2, 3, 4], 100))
    cache.put(_state([1, 2, 9], 100))
    shared, found = cache.best(np.asarray([1, 2, 3, 4, 5], dtype=np.intc))
    assert shared == 4
    assert found is not None
    assert found.tokens.tolist() == [1, 2, 3, 4]
    # [1, 2, 9] is now the least recently used: the third state pushes it out.
    cache.put(_state([7, 8], 100))
    assert cache.size_bytes == 200
    assert cache.best(np.asarray([1, 2, 9], dtype=np.intc))[0] == 2  # only [1, 2, 3, 4] shares [1, 2]


def test_a_state_that_extends_another_replaces_it() -> None:
    cache = PromptCache(capacity_bytes=10_000, min_tokens=1)
    cache.put(_state([1, 2, 3], 100))
    cache.put(_state([1, 2, 3, 4, 5], 150))
    assert len(cache) == 1
    assert cache.size_bytes == 150
    cache.put(_state([5] * 3, 20_000))  # larger than the whole cache: not kept
    assert len(cache) == 1


def test_common_prefix() -> None:
    a = np.asarray([1, 2, 3], dtype=np.intc)
    assert common_prefix(a, np.asarray([1, 2, 3, 4], dtype=np.intc)) == 3
    assert common_prefix(a, np.asarray([1, 5], dtype=np.intc)) == 1
    assert common_prefix(a, np.asarray([], dtype=np.intc)) == 0


def test_a_full_queue_refuses_at_once_and_a_long_wait_times_out() -> None:
    async def run() -> None:
        admission = Admission(1, depth=1, timeout_s=0.3)
        assert await admission.enter() < 0.1  # the engine was free
        waiter = asyncio.create_task(admission.enter())
        await asyncio.sleep(0.05)
        assert admission.waiting == 1
        with pytest.raises(Busy) as full:
            await admission.enter()
        assert full.value.retry_after_s >= 1
        with pytest.raises(Busy):
            await waiter  # waited past 0.3 s
        assert admission.waiting == 0
        admission.leave(0.5)
        later = asyncio.create_task(admission.enter())
        assert await later < 0.1

    asyncio.run(run())


def test_a_waiter_gets_the_engine_when_it_is_left() -> None:
    async def run() -> None:
        admission = Admission(1, depth=4, timeout_s=5)
        await admission.enter()
        waiter = asyncio.create_task(admission.enter())
        await asyncio.sleep(0.1)
        admission.leave(0.1)
        assert 0.05 < await waiter < 1

    asyncio.run(run())


class _Threads(SimulatedBackend):
    """The simulated engine, noting the thread each generation ran on; the second fails."""

    def __init__(self) -> None:
        super().__init__(model="m")
        self.threads: list[threading.Thread] = []

    def generate(self, request: dict[str, Any], cancel: threading.Event) -> Iterator[dict[str, Any]]:
        self.threads.append(threading.current_thread())  # kept: idents are reused
        if len(self.threads) == 2:
            raise RuntimeError("the engine failed")
        yield from super().generate(request, cancel)


def test_an_admitted_replica_generates_on_one_engine_thread_that_outlives_a_failure() -> None:
    backend = _Threads()
    replica = Replica(backend, Admission(1, depth=4, timeout_s=5))
    request = {"messages": [{"role": "user", "content": "one two three"}], "max_tokens": 3}

    async def answer() -> list[dict[str, Any]]:
        return [chunk async for chunk in replica.chunks(request)]

    async def run() -> None:
        assert await answer()
        with pytest.raises(RuntimeError, match="the engine failed"):
            await answer()
        assert await answer()

    asyncio.run(run())
    # One long-lived thread (llama.cpp's OpenMP team stays with it), not this one nor one per request.
    assert len(set(backend.threads)) == 1
    assert threading.current_thread() not in backend.threads
