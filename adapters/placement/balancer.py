"""A least-loaded balancer over a deployment's healthy replicas.

``acquire`` picks the healthy replica with the fewest requests in flight (ties go
round-robin, so an idle deployment still spreads its traffic) and counts the request on
it; ``release`` uncounts it. ``lease`` does both around a block.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from modelyard.adapters.engines.base import ReplicaHandle
from modelyard.adapters.placement.base import Placement

T = TypeVar("T")


def least_loaded(candidates: Sequence[T], turn: int, load: Callable[[T], int]) -> T:
    """The candidate with the least ``load``; among equals, the ``turn``-th in rotation.

    The rotation spreads an idle deployment's traffic instead of sending it all to the
    first replica. The gateway uses it over replica URLs, the balancer over handles.
    """
    start = turn % len(candidates)
    rotated = [*candidates[start:], *candidates[:start]]
    # min() keeps the first of equals, so the rotation decides ties.
    return min(rotated, key=load)


class NoHealthyReplica(LookupError):
    """The deployment has no replica able to take a request right now."""


class LeastLoadedBalancer:
    """Spreads requests over the healthy replicas ``placement`` holds for each deployment."""

    def __init__(self, placement: Placement) -> None:
        self._placement = placement
        self._lock = threading.Lock()
        self._turns: dict[str, int] = {}

    def acquire(self, deployment: str) -> ReplicaHandle:
        """The least-loaded healthy replica of ``deployment``, with this request counted on it."""
        candidates = [h for h in self._placement.replicas(deployment) if h.healthy]
        if not candidates:
            raise NoHealthyReplica(f"{deployment} has no healthy replica right now")
        with self._lock:
            turn = self._turns.get(deployment, 0)
            self._turns[deployment] = turn + 1
            chosen = least_loaded(candidates, turn, lambda handle: handle.in_flight)
            chosen.in_flight += 1
        return chosen

    def release(self, handle: ReplicaHandle) -> None:
        """The request counted on ``handle`` finished (or failed)."""
        with self._lock:
            if handle.in_flight <= 0:
                raise ValueError(f"replica {handle.name} has no request in flight to release")
            handle.in_flight -= 1

    @contextmanager
    def lease(self, deployment: str) -> Iterator[ReplicaHandle]:
        """Acquire a replica for the block and release it however the block ends."""
        handle = self.acquire(deployment)
        try:
            yield handle
        finally:
            self.release(handle)
