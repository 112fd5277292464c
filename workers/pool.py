"""The shared tier's pool (FEATURES A6): one replica per model serves every shared deployment of it.

A shared deployment does not get a replica of its own: it joins its model's pool replica,
started on the first join and stopped when the last deployment leaves. Each deployment
records the pool replica as its one replica (so the gateway routes its calls there and
billing counts it at the shared price, per deployment); its key, its usage and its metrics
stay its own. A pool replica found dead is replaced at the next join; deployments still
holding the dead one leave it and join the new one as they heal.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from uuid import UUID

from modelyard.adapters.engines.base import ReplicaHandle, ReplicaSpec
from modelyard.adapters.placement.base import Placement

# The placement group the pool replicas are filed under (not any one deployment's).
POOL = "shared-pool"


class SharedPool:
    """Pool replicas by model, and which deployments use each."""

    def __init__(self, placement: Placement) -> None:
        self._placement = placement
        self._handles: dict[str, ReplicaHandle] = {}
        self._users: dict[str, set[UUID]] = {}

    def join(self, model: str, spec: Callable[[], ReplicaSpec], deployment: UUID) -> ReplicaHandle:
        """The model's live pool replica (started, or replaced if dead), now used by ``deployment``."""
        handle = self._handles.get(model)
        if handle is None or not self._placement.alive(handle):
            if handle is not None:
                self._placement.stop(handle)
            name = f"pool-{model.replace('.', '_')}-{secrets.token_hex(4)}"
            handle = self._placement.start(spec(), name, deployment=POOL)
            self._handles[model] = handle
        self._users.setdefault(model, set()).add(deployment)
        return handle

    def leave(self, model: str, deployment: UUID, handle: ReplicaHandle) -> None:
        """``deployment`` no longer uses ``handle``: the pool replica stops with its last user; a
        replaced one is stopped at once."""
        users = self._users.setdefault(model, set())
        users.discard(deployment)
        current = self._handles.get(model)
        if current is not handle:
            self._placement.stop(handle)  # already replaced: nothing routes to it
        elif not users:
            del self._handles[model]
            self._placement.stop(handle)

    def users(self, model: str) -> frozenset[UUID]:
        """The deployments the model's pool replica serves now."""
        return frozenset(self._users.get(model, ()))

    def forget(self) -> None:
        """After the placement stopped every replica: nothing is pooled any more."""
        self._handles.clear()
        self._users.clear()
