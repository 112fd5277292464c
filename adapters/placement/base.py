"""The placement interface: where a deployment's replicas run, and how they are watched.

``local`` (processes on this host) is the embedded default; a distributed implementation
meets the same contract when users outgrow one machine. A model no implementation can
place on this cluster raises ``PlacementError`` with the reason the API reports; one with
no room for the replica now, but maybe later, raises its ``CapacityUnavailable`` at once
(the reconciler records the wait, and asks again on its next pass).

Each replica is started with a token it checks on every call (``ReplicaHandle.token``) and
gives up when the process that placed it is gone; ``heartbeat`` lets the next process date
the loss of replicas that went with a previous one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from modelyard.adapters.engines.base import CapacityUnavailable, PlacementError, ReplicaHandle, ReplicaSpec

__all__ = ["CapacityUnavailable", "Placement", "PlacementError", "ReplicaHandle", "ReplicaSpec"]


class Placement(Protocol):
    """Starts, lists, watches and stops the replicas of deployments."""

    def start(self, spec: ReplicaSpec, name: str, *, deployment: str = "") -> ReplicaHandle:
        """Start one replica called ``name`` and return once it answers its health check."""
        ...

    def start_many(self, deployment: str, spec: ReplicaSpec, count: int) -> list[ReplicaHandle]:
        """Start ``count`` replicas of ``spec`` for ``deployment``; all start or none stays."""
        ...

    def replicas(self, deployment: str) -> list[ReplicaHandle]:
        """The replicas this placement holds for ``deployment``, in start order."""
        ...

    def alive(self, handle: ReplicaHandle) -> bool:
        """Whether the replica is still there to serve."""
        ...

    def dead(self, deployment: str) -> list[ReplicaHandle]:
        """The replicas of ``deployment`` that are gone; each is marked unhealthy."""
        ...

    def replace(self, handle: ReplicaHandle) -> ReplicaHandle:
        """Stop what is left of ``handle`` and start a fresh replica of the same spec."""
        ...

    def stop(self, handle: ReplicaHandle) -> None:
        """Stop one replica and release what it held."""
        ...

    def stop_deployment(self, deployment: str) -> None:
        """Stop every replica of ``deployment``."""
        ...

    def stop_all(self) -> None:
        """Stop every replica this placement started."""
        ...

    def sweep(self) -> None:
        """Remove what replicas this placement does not hold left behind (their logs)."""
        ...

    def heartbeat(self) -> None:
        """Record that this placement's replicas were seen now."""
        ...

    def last_heartbeat(self) -> datetime | None:
        """When a placement over the same place last saw its replicas (None if never)."""
        ...


def start_all(
    placement: Placement, spec: ReplicaSpec, names: Iterable[str], deployment: str
) -> list[ReplicaHandle]:
    """A replica of ``spec`` under each of ``names`` for ``deployment``; all start or none stays."""
    started: list[ReplicaHandle] = []
    try:
        for name in names:
            started.append(placement.start(spec, name, deployment=deployment))
    except PlacementError:
        for handle in started:
            placement.stop(handle)
        raise
    return started
