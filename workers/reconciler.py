"""The reconciler: makes the replicas that run match what each deployment's state asks for.

provisioning -> start the replicas, report each, activate (or fail with the reason);
scaling -> start or stop replicas to the new capacity, report the scale;
running/degraded -> a dead replica is reported lost, the deployment degraded, a
replacement started, then recovered; teardown -> stop every replica, report destroyed.
An account whose credits ran out has its live deployments torn down. Each step is an
event; the views (and the next pass) see the new state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from modelyard.adapters.engines.models import PlacementError, ReplicaSpec, gguf_paths, replica_spec
from modelyard.adapters.placement.local import LocalPlacement, ReplicaHandle
from modelyard.adapters.views.db import ViewDatabase
from modelyard.domain.deployments.service import (
    DeploymentsService,
    OnDeployment,
    ReplicaCommand,
    WithCapacity,
    WithReason,
)
from modelyard.domain.shared.errors import DomainError
from modelyard.projections.balances.queries import exhausted_accounts
from modelyard.projections.deployments.queries import WorkItem, deployments_needing_work
from modelyard.settings import Settings
from modelyard.workers.loop import BackgroundLoop

log = logging.getLogger(__name__)
# A pass is cheap (one query); twice a second keeps provisioning and failure detection snappy.
PASS_INTERVAL_S = 0.5


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    """Owns the replica processes of this host's deployments."""

    def __init__(
        self,
        settings: Settings,
        deployments: DeploymentsService,
        views: ViewDatabase,
        placement: LocalPlacement,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._settings, self._deployments, self._views = settings, deployments, views
        self._placement = placement
        self._clock = clock
        self._gguf = gguf_paths(settings.gguf_models)
        self.replicas: dict[UUID, dict[str, ReplicaHandle]] = {}
        self._counter = 0

    def run_once(self) -> None:
        """One pass over every deployment that needs something done."""
        with self._views.transaction() as tx:
            targets = deployments_needing_work(tx)
            exhausted = exhausted_accounts(tx)
        for target in targets:
            try:
                if target.account_id in exhausted and target.state != "teardown":
                    self._deployments.request_teardown(self._on(target))
                    continue
                self._step(target)
            except DomainError as exc:
                # The state moved under us (another command); the next pass sees the new one.
                log.info("reconcile %s (%s): %s", target.id, target.state, exc.message)

    def _on(self, target: WorkItem) -> OnDeployment:
        return OnDeployment(deployment_id=target.id, at=self._clock())

    def _because(self, target: WorkItem, reason: str) -> WithReason:
        return WithReason(deployment_id=target.id, reason=reason, at=self._clock())

    def _lose(self, target: WorkItem, replica: str, reason: str) -> None:
        self._deployments.lose_replica(
            ReplicaCommand(deployment_id=target.id, replica=replica, reason=reason, at=self._clock())
        )

    def _step(self, target: WorkItem) -> None:
        if target.state == "provisioning":
            self._provision(target)
        elif target.state == "scaling" and target.pending_capacity is not None:
            self._resize(target, int(target.pending_capacity))
            self._deployments.finish_scale(
                WithCapacity(deployment_id=target.id, capacity=int(target.pending_capacity), at=self._clock())
            )
        elif target.state in ("running", "degraded"):
            self._heal(target)
        elif target.state == "teardown":
            for handle in self.replicas.pop(target.id, {}).values():
                self._placement.stop(handle)
            self._deployments.mark_destroyed(self._on(target))

    def _spec(self, target: WorkItem) -> ReplicaSpec:
        spec = replica_spec(target.model, engine=self._settings.engine, gguf=self._gguf, preset=target.preset)
        if spec.engine != "simulated":
            return spec
        return ReplicaSpec(
            model=spec.model,
            engine="simulated",
            context_window=spec.context_window,
            ttft_ms=self._settings.simulated_ttft_ms,
            tokens_per_s=self._settings.simulated_tokens_per_s,
        )

    def _provision(self, target: WorkItem) -> None:
        try:
            self._resize(target, int(target.capacity))
        except PlacementError as exc:
            for handle in self.replicas.pop(target.id, {}).values():
                self._placement.stop(handle)
            self._deployments.fail_provisioning(self._because(target, str(exc)))
            return
        self._deployments.activate(self._on(target))

    def _resize(self, target: WorkItem, size: int) -> None:
        current = self.replicas.setdefault(target.id, {})
        while len(current) < size:
            self._counter += 1
            name = f"{target.id.hex}-r{self._counter}"
            handle = self._placement.start(self._spec(target), name)
            current[name] = handle
            self._deployments.start_replica(
                ReplicaCommand(
                    deployment_id=target.id, replica=name, base_url=handle.base_url, at=self._clock()
                )
            )
        for name in list(current)[size:]:
            self._placement.stop(current.pop(name))
            self._lose(target, name, "scaled down")

    def _heal(self, target: WorkItem) -> None:
        current = self.replicas.setdefault(target.id, {})
        dead = [name for name, handle in current.items() if not self._placement.alive(handle)]
        missing = int(target.capacity) - (len(current) - len(dead))
        if not dead and missing <= 0:
            return
        for name in dead:
            current.pop(name)
            self._lose(target, name, "process exited")
        if target.state == "running":
            self._deployments.degrade(self._because(target, f"{missing} of {target.capacity} replicas down"))
        try:
            self._resize(target, int(target.capacity))
        except PlacementError as exc:
            log.warning("cannot replace replicas of %s: %s", target.id, exc)
            return
        self._deployments.recover(self._on(target))


class ReconcilerWorker(BackgroundLoop):
    """Runs reconciliation passes in a background thread; stops replicas on the way out."""

    def __init__(self, reconciler: Reconciler, placement: LocalPlacement) -> None:
        self.reconciler, self.placement = reconciler, placement
        super().__init__("reconciler", self._step)

    def _step(self) -> float:
        self.reconciler.run_once()
        return PASS_INTERVAL_S

    def stop(self, timeout: float = 30.0) -> None:
        """Stop passes and every replica this host started."""
        super().stop(timeout)
        self.placement.stop_all()
