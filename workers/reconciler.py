"""The reconciler: makes the replicas that run match what each deployment's state asks for.

provisioning (or waking from zero) -> start the replicas, report each, activate (or fail
with the reason); scaled to zero -> stop the replicas it released;
scaling -> start or stop replicas to the new capacity, report the scale;
running/degraded -> a dead replica is reported lost, the deployment degraded, a
replacement started, then recovered; teardown -> stop every replica, report destroyed.
An account whose credits ran out has its live deployments torn down. Each step is an
event; the views (and the next pass) see the new state.

Replica truth: a replica this process did not start is not one it can vouch for. Its
replicas die with it (``engines.lifeline``), so any other replica recorded for a
deployment it works on belonged to a process that is gone: its loss is recorded, dated
when that process last saw its replicas (the placement's heartbeat), and the deployment
heals as from any dead replica. ``recover`` does this once before the API serves, each
pass again for rows the views had not caught up on, and ``release`` records the losses
of this process's own replicas when it stops.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from uuid import UUID

import msgspec

from modelyard.adapters.engines.models import PlacementError, ReplicaSpec, gguf_paths, replica_spec
from modelyard.adapters.placement.base import CapacityUnavailable, Placement, ReplicaHandle
from modelyard.adapters.uploads.served import is_uploaded, uploaded_spec
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
from modelyard.projections.deployments.queries import (
    RecordedReplica,
    WorkItem,
    deployments_needing_work,
    recorded_replicas,
)
from modelyard.settings import Settings
from modelyard.workers.loop import BackgroundLoop
from modelyard.workers.pool import SharedPool

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
        placement: Placement,
        clock: Callable[[], datetime] = _utcnow,
        *,
        cluster_gpu: Callable[[], bool] | None = None,
    ) -> None:
        self._settings, self._deployments, self._views = settings, deployments, views
        self._placement = placement
        self._clock = clock
        # Whether the placement's nodes have GPUs (a cluster's, asked when a spec is made);
        # None: whether this host has one.
        self._cluster_gpu = cluster_gpu
        self._gguf = gguf_paths(settings.gguf_models)
        self.replicas: dict[UUID, dict[str, ReplicaHandle]] = {}
        # The shared tier's replicas, one per model, each serving many deployments.
        self.pool = SharedPool(placement)
        # When the previous process last saw its replicas: their losses are dated then.
        self._previous_seen: datetime | None = None

    def recover(self) -> None:
        """Start-up, before the API serves: record the loss of every replica recorded for a
        deployment this process works on (none is this process's yet), degrade the running
        ones, and remove the logs the previous process's replicas left."""
        self._previous_seen = self._placement.last_heartbeat()
        self._placement.sweep()
        with self._views.transaction() as tx:
            targets = deployments_needing_work(tx)
            recorded = recorded_replicas(tx)
        for target in targets:
            try:
                self._reckon_foreign(target, recorded.get(target.id, []))
            except DomainError as exc:
                log.info("recover %s (%s): %s", target.id, target.state, exc.message)

    def run_once(self) -> None:
        """One pass over every deployment that needs something done."""
        self._placement.heartbeat()
        with self._views.transaction() as tx:
            targets = deployments_needing_work(tx)
            exhausted = exhausted_accounts(tx)
            recorded = recorded_replicas(tx)
        for target in targets:
            try:
                if self._reckon_foreign(target, recorded.get(target.id, [])):
                    continue  # the next pass acts on the state these losses led to
                if target.account_id in exhausted and target.state != "teardown":
                    self._deployments.request_teardown(self._on(target))
                    continue
                self._step(target)
            except DomainError as exc:
                # The state moved under us (another command); the next pass sees the new one.
                log.info("reconcile %s (%s): %s", target.id, target.state, exc.message)
        self._placement.heartbeat()

    def _reckon_foreign(self, target: WorkItem, recorded: Sequence[RecordedReplica]) -> int:
        """Record the loss of the replicas recorded for ``target`` that this process does not
        own, degrading it if it was running; how many were lost."""
        owned = self.replicas.get(target.id, {})
        foreign = [row for row in recorded if row.replica not in owned]
        if not foreign or target.state == "teardown":  # teardown forgets every replica anyway
            return 0
        # The store, not the views: a loss this process recorded may not have reached them yet.
        still = set(self._deployments.get(target.id).replicas)
        lost = [row for row in foreign if row.replica in still]
        for row in lost:
            self._lose(target, row.replica, "its server process is gone", lost_at=self._lost_at(row))
        if lost and target.state == "running":
            reason = f"{len(lost)} of {target.capacity} replicas went with the previous server process"
            self._deployments.degrade(self._because(target, reason))
        return len(lost)

    def _lost_at(self, row: RecordedReplica) -> datetime:
        """When a previous process's replica stopped serving: when that process last saw it."""
        seen = self._previous_seen
        if seen is None:
            return self._clock()
        return max(seen, datetime.fromisoformat(row.started_at))

    def release(self) -> None:
        """On the way out: stop every replica this process started and record each loss, so
        the views never route to them and the next start finds nothing of this one."""
        self._placement.stop_all()
        self.pool.forget()
        owned, self.replicas = self.replicas, {}
        for dep_id, handles in owned.items():
            at = self._clock()
            try:
                for name in handles:
                    self._deployments.lose_replica(
                        ReplicaCommand(deployment_id=dep_id, replica=name, reason="server stopped", at=at)
                    )
                if handles and self._deployments.get(dep_id).state == "running":
                    self._deployments.degrade(
                        WithReason(deployment_id=dep_id, reason="server stopped", at=at)
                    )
            except DomainError as exc:
                log.info("release %s: %s", dep_id, exc.message)

    def _on(self, target: WorkItem) -> OnDeployment:
        return OnDeployment(deployment_id=target.id, at=self._clock())

    def _because(self, target: WorkItem, reason: str) -> WithReason:
        return WithReason(deployment_id=target.id, reason=reason, at=self._clock())

    def _lose(self, target: WorkItem, replica: str, reason: str, lost_at: datetime | None = None) -> None:
        # Recorded now; ``lost_at`` dates when it stopped serving, where billing stops.
        self._deployments.lose_replica(
            ReplicaCommand(
                deployment_id=target.id, replica=replica, reason=reason, lost_at=lost_at, at=self._clock()
            )
        )

    def _step(self, target: WorkItem) -> None:
        if target.state in ("provisioning", "waking"):
            if target.state == "waking":
                self._release_idle(target)
            self._provision(target)
        elif target.state == "scaled_to_zero":
            self._release_idle(target)
        elif target.state == "scaling" and target.pending_capacity is not None:
            self._resize(target, int(target.pending_capacity))
            self._deployments.finish_scale(
                WithCapacity(deployment_id=target.id, capacity=int(target.pending_capacity), at=self._clock())
            )
        elif target.state in ("running", "degraded"):
            self._heal(target)
            if target.state == "running":
                self._represet(target)
        elif target.state == "teardown":
            for handle in self.replicas.pop(target.id, {}).values():
                self._stop(target, handle)
            self._deployments.mark_destroyed(self._on(target))

    def _represet(self, target: WorkItem) -> None:
        """Replace, one at a time, the replicas started under another preset than the
        deployment's now (``PresetChanged``): each new one serves before the old one stops,
        so the deployment keeps serving and is billed for its capacity only."""
        if target.tier == "shared":
            return  # the pool replica is every tenant's
        current = self.replicas.get(target.id, {})
        spec = self._spec(target)
        stale = [name for name, h in current.items() if h.spec is not None and h.spec.preset != spec.preset]
        for old in stale:
            name = f"{target.id.hex}-r{secrets.token_hex(4)}"
            try:
                handle = self._placement.start(spec, name)
            except PlacementError as exc:
                log.warning("cannot restart %s under preset %s: %s", target.id, spec.preset, exc)
                return
            current[name] = handle
            self._deployments.start_replica(
                ReplicaCommand(
                    deployment_id=target.id,
                    replica=name,
                    base_url=handle.base_url,
                    token=handle.token,
                    at=self._clock(),
                )
            )
            self._placement.stop(current.pop(old))
            self._lose(target, old, f"replaced: the preset is now {spec.preset}")
            self._placement.heartbeat()

    def _release_idle(self, target: WorkItem) -> None:
        """Stop the replicas a deployment had before it went to zero, if no pass stopped them
        yet (it woke within a pass): ``ScaledToZero`` released them; none is routed to."""
        for handle in self.replicas.pop(target.id, {}).values():
            self._placement.stop(handle)

    def _spec(self, target: WorkItem) -> ReplicaSpec:
        if is_uploaded(target.model):
            # An account's own model is served for real whatever the engine setting.
            data_dir = self._settings.data_dir
            return uploaded_spec(self._views, data_dir, target.account_id, target.model, target.preset)
        spec = replica_spec(
            target.model,
            engine=self._settings.engine,
            gguf=self._gguf,
            preset=target.preset,
            gpu=None if self._cluster_gpu is None else self._cluster_gpu(),
        )
        spec = msgspec.structs.replace(spec, gpu_type=target.gpu_type, region=target.region)
        if spec.engine != "simulated":
            return spec
        return ReplicaSpec(
            model=spec.model,
            engine="simulated",
            preset=spec.preset,
            context_window=spec.context_window,
            ttft_ms=self._settings.simulated_ttft_ms,
            tokens_per_s=self._settings.simulated_tokens_per_s,
            gpu_type=target.gpu_type,
            region=target.region,
        )

    def _provision(self, target: WorkItem) -> None:
        try:
            self._resize(target, int(target.capacity))
        except CapacityUnavailable as exc:
            # The replicas started so far keep running (unbilled while it provisions); the next
            # pass asks for the rest, until the wait limit.
            since = self._deployments.get(target.id).awaiting_capacity_since
            waited = 0.0 if since is None else (self._clock() - since).total_seconds()
            if waited < self._settings.capacity_wait_s:
                self._deployments.await_capacity(self._because(target, str(exc)))
                return
            self._fail(target, f"{exc} (waited {waited:.0f} s for capacity)")
            return
        except PlacementError as exc:
            self._fail(target, str(exc))
            return
        self._deployments.activate(self._on(target))

    def _fail(self, target: WorkItem, reason: str) -> None:
        for handle in self.replicas.pop(target.id, {}).values():
            self._stop(target, handle)
        self._deployments.fail_provisioning(self._because(target, reason))

    def _stop(self, target: WorkItem, handle: ReplicaHandle) -> None:
        """Stop a replica of ``target``; a shared one only leaves its pool replica."""
        if target.tier == "shared":
            self.pool.leave(target.model, target.id, handle)
        else:
            self._placement.stop(handle)

    def _join_pool(self, target: WorkItem) -> None:
        """A shared deployment's one replica: its model's pool replica, recorded as its own."""
        current = self.replicas.setdefault(target.id, {})
        if current:
            return
        handle = self.pool.join(target.model, lambda: self._spec(target), target.id)
        current[handle.name] = handle
        self._deployments.start_replica(
            ReplicaCommand(
                deployment_id=target.id,
                replica=handle.name,
                base_url=handle.base_url,
                token=handle.token,
                at=self._clock(),
            )
        )

    def _resize(self, target: WorkItem, size: int) -> None:
        if target.tier == "shared":
            self._join_pool(target)
            return
        current = self.replicas.setdefault(target.id, {})
        while len(current) < size:
            # Random, not counted: a name must never be reused by a later process for the same
            # deployment (its rows, its log file and its loss would be mistaken for another's).
            name = f"{target.id.hex}-r{secrets.token_hex(4)}"
            handle = self._placement.start(self._spec(target), name)
            current[name] = handle
            self._deployments.start_replica(
                ReplicaCommand(
                    deployment_id=target.id,
                    replica=name,
                    base_url=handle.base_url,
                    token=handle.token,
                    at=self._clock(),
                )
            )
            self._placement.heartbeat()
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
            self._stop(target, current.pop(name))  # reaps it, quotes and removes its log
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
    """Recovers replica truth, runs reconciliation passes in a background thread, and stops
    (and records the loss of) its replicas on the way out."""

    def __init__(
        self, reconciler: Reconciler, placement: Placement, catch_up: Callable[[], None] | None = None
    ) -> None:
        self.reconciler, self.placement = reconciler, placement
        # Brings the views up to the store before recovery reads them: a replica recorded
        # just before a crash must not be missed while the API already shows it running.
        self._catch_up = catch_up
        super().__init__("reconciler", self._step)

    def _step(self) -> float:
        self.reconciler.run_once()
        return PASS_INTERVAL_S

    def start(self) -> None:
        """Record what the previous process left behind, then begin the passes."""
        if self._catch_up is not None:
            self._catch_up()
        self.reconciler.recover()
        super().start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop passes and every replica this host started, recording their losses."""
        super().stop(timeout)
        self.reconciler.release()
        self.placement.stop_all()
