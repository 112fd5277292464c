"""Read the deployments view: what the API shows, the gateway routes to, and the workers act on.

Every function takes an open :class:`~modelyard.projections.base.Tx` and a deployment's
``UUID``; the view stores it as ``uuid.hex``, so one id is asked for in one spelling.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any
from uuid import UUID

import msgspec

from modelyard.domain.deployments.events import Autoscaling, SlaTargets
from modelyard.projections.base import Tx

#: States with replicas that answer requests.
SERVING = ("running", "scaling", "degraded")
#: States in which the reconciler has something to do each pass.
NEEDING_WORK = ("provisioning", "waking", "scaling", "running", "degraded", "scaled_to_zero", "teardown")
#: Ids a query asks for at most, in the reads of many deployments at once.
BATCH = 500
#: Ended states in which minutes may still be owed up to the end.
ENDED = ("scaled_to_zero", "teardown", "destroyed", "failed")


class CapacityWait(msgspec.Struct, frozen=True, kw_only=True):
    """Since when, and why, no node has had room for a deployment's replicas."""

    since: str
    reason: str


def capacity_wait(reason: Any, since: Any) -> CapacityWait | None:
    """The wait a row's joined ``capacity_waits`` columns describe, or None."""
    return None if reason is None else CapacityWait(since=str(since), reason=str(reason))


class Deployment(msgspec.Struct, frozen=True, kw_only=True):
    """One deployments row, as the management routes show it."""

    id: UUID
    prefix: str
    name: str
    model: str
    size: str
    tier: str
    capacity: int
    state: str
    status_v1: str
    status_v2: str
    failure_reason: str | None
    waiting_for_capacity: CapacityWait | None
    charged: int
    created_at: str
    updated_at: str


class DeploymentState(msgspec.Struct, frozen=True, kw_only=True):
    """What the gateway needs to route a call: the state, the model served, and the SLA's
    limit on requests in flight (None: no limit)."""

    state: str
    model: str
    concurrency_limit: int | None = None


class WorkItem(msgspec.Struct, frozen=True, kw_only=True):
    """A deployment the reconciler must look at, with what it needs to act."""

    id: UUID
    state: str
    capacity: int
    pending_capacity: int | None
    model: str
    preset: str
    account_id: str
    # ``shared`` deployments join their model's pool replica instead of starting their own.
    tier: str = "dedicated"
    # Where its replicas must run (a cluster placement places by them); None: anywhere.
    gpu_type: str | None = None
    region: str | None = None


# A deployment waiting for capacity has a ``capacity_waits`` row (its columns are named
# unlike any of ``deployments``, so the WHERE clauses after this need no table names).
WITH_WAIT = " FROM deployments LEFT JOIN capacity_waits ON capacity_waits.deployment_id = deployments.id"
_DEPLOYMENT = (
    "SELECT id, prefix, name, model, size, tier, capacity, state, status_v1, status_v2, failure_reason,"
    " wait_reason, wait_since, charged, created_at, updated_at" + WITH_WAIT
)


def _deployment(row: tuple[Any, ...]) -> Deployment:
    (dep, prefix, name, model, size, tier, capacity, state, v1, v2, reason, wait_reason, wait_since,
     charged, created, updated) = row  # fmt: skip
    return Deployment(
        id=UUID(hex=str(dep)),
        prefix=str(prefix),
        name=str(name),
        model=str(model),
        size=str(size),
        tier=str(tier),
        capacity=int(capacity),
        state=str(state),
        status_v1=str(v1),
        status_v2=str(v2),
        failure_reason=None if reason is None else str(reason),
        waiting_for_capacity=capacity_wait(wait_reason, wait_since),
        charged=int(charged),
        created_at=str(created),
        updated_at=str(updated),
    )


def instances_of_account(tx: Tx, account_id: str) -> list[Deployment]:
    """The account's deployments, oldest first, destroyed ones included."""
    rows = tx.execute(f"{_DEPLOYMENT} WHERE account_id = %s ORDER BY created_at", [account_id])
    return [_deployment(row) for row in rows]


def every_deployment(tx: Tx) -> list[tuple[str, Deployment]]:
    """(account id, deployment) for every deployment of the installation, oldest first."""
    rows = tx.execute(_DEPLOYMENT.replace(" FROM", ", account_id FROM", 1) + " ORDER BY created_at", [])
    return [(str(row[-1]), _deployment(row[:-1])) for row in rows]


def instance_for_account(tx: Tx, account_id: str, deployment_id: UUID) -> Deployment | None:
    """One deployment if it belongs to the account (destroyed or not), else None."""
    rows = tx.execute(f"{_DEPLOYMENT} WHERE account_id = %s AND id = %s", [account_id, deployment_id.hex])
    return _deployment(rows[0]) if rows else None


def deployment_state(tx: Tx, deployment_id: UUID) -> DeploymentState | None:
    """The state and model of a deployment (any account's), or None if there is none."""
    return deployment_states(tx, [deployment_id]).get(deployment_id)


def deployment_states(tx: Tx, deployment_ids: Sequence[UUID]) -> dict[UUID, DeploymentState]:
    """``deployment_state`` of each of ``deployment_ids`` the view holds, a query a batch."""
    found: dict[UUID, DeploymentState] = {}
    for batch in _batches(deployment_ids):
        rows = tx.execute(
            f"SELECT id, state, model, sla FROM deployments WHERE id IN ({_marks(batch)})",  # noqa: S608 - placeholders only
            list(batch),
        )
        for dep, state, model, sla in rows:
            limit = msgspec.json.decode(str(sla), type=SlaTargets).concurrency_limit
            found[UUID(hex=str(dep))] = DeploymentState(
                state=str(state), model=str(model), concurrency_limit=limit
            )
    return found


def deployment_version(tx: Tx, deployment_id: UUID) -> int | None:
    """The last event version the view applied for a deployment (read-your-writes waits on it)."""
    rows = tx.execute("SELECT version FROM deployments WHERE id = %s", [deployment_id.hex])
    return int(rows[0][0]) if rows else None


class ReplicaRoute(msgspec.Struct, frozen=True, kw_only=True):
    """Where one replica answers and the token it checks (never shown: the repr leaves it out)."""

    replica: str
    base_url: str
    token: str

    def __repr__(self) -> str:
        return f"ReplicaRoute(replica={self.replica!r}, base_url={self.base_url!r})"


class RecordedReplica(msgspec.Struct, frozen=True, kw_only=True):
    """A replica the view holds as started for a deployment, and when it started."""

    replica: str
    started_at: str


def serving_replicas(tx: Tx, deployment_id: UUID) -> list[ReplicaRoute]:
    """A deployment's started replicas with their tokens, in replica-name order.

    A replica started before tokens existed has none (``""``); it is a replica of a process
    long gone, and the reconciler records its loss.
    """
    return serving_replicas_of(tx, [deployment_id])[deployment_id]


def serving_replicas_of(tx: Tx, deployment_ids: Sequence[UUID]) -> dict[UUID, list[ReplicaRoute]]:
    """``serving_replicas`` of each of ``deployment_ids`` (``[]`` for one with none), a query a batch."""
    found: dict[UUID, list[ReplicaRoute]] = {dep: [] for dep in deployment_ids}
    for batch in _batches(deployment_ids):
        rows = tx.execute(
            "SELECT r.deployment_id, r.replica, r.base_url, COALESCE(t.token, '') FROM replicas r"  # noqa: S608 - placeholders only
            " LEFT JOIN replica_tokens t ON t.deployment_id = r.deployment_id AND t.replica = r.replica"
            f" WHERE r.deployment_id IN ({_marks(batch)}) ORDER BY r.deployment_id, r.replica",
            list(batch),
        )
        for dep, name, url, token in rows:
            found[UUID(hex=str(dep))].append(
                ReplicaRoute(replica=str(name), base_url=str(url), token=str(token))
            )
    return found


def _batches(deployment_ids: Sequence[UUID]) -> Iterator[tuple[str, ...]]:
    """The ids as the view spells them, a bounded number a query (SQLite caps its parameters)."""
    spelled = [dep.hex for dep in deployment_ids]
    for start in range(0, len(spelled), BATCH):
        yield tuple(spelled[start : start + BATCH])


def _marks(values: tuple[str, ...]) -> str:
    return ", ".join("%s" for _ in values)


_NEEDING_WORK = (
    "SELECT id, state, capacity, pending_capacity, model, preset, account_id, tier, gpu_type, region"  # noqa: S608 - placeholders only
    f" FROM deployments WHERE state IN ({_marks(NEEDING_WORK)})"
)
_RECORDED = (
    "SELECT r.deployment_id, r.replica, r.started_at FROM replicas r"  # noqa: S608 - placeholders only
    " JOIN deployments d ON d.id = r.deployment_id"
    f" WHERE d.state IN ({_marks(NEEDING_WORK)}) ORDER BY r.deployment_id, r.replica"
)
_OWING_MINUTES = (
    f"SELECT id FROM deployments WHERE state IN ({_marks(SERVING)})"  # noqa: S608 - placeholders only
    f" OR (state IN ({_marks(ENDED)}) AND (metered_through IS NULL OR metered_through < updated_at))"
)


def deployments_needing_work(tx: Tx) -> list[WorkItem]:
    """The reconciler's pass: every deployment whose replicas may not match its state."""
    return [
        WorkItem(
            id=UUID(hex=str(dep)),
            state=str(state),
            capacity=int(capacity),
            pending_capacity=None if pending is None else int(pending),
            model=str(model),
            preset=str(preset),
            account_id=str(account),
            tier=str(tier),
            gpu_type=None if gpu is None else str(gpu),
            region=None if region is None else str(region),
        )
        for dep, state, capacity, pending, model, preset, account, tier, gpu, region in tx.execute(
            _NEEDING_WORK, NEEDING_WORK
        )
    ]


def recorded_replicas(tx: Tx) -> dict[UUID, list[RecordedReplica]]:
    """The replicas the view holds as started, by deployment, for deployments the reconciler
    works on; the reconciler compares them with the ones it owns."""
    rows = tx.execute(_RECORDED, NEEDING_WORK)
    found: dict[UUID, list[RecordedReplica]] = {}
    for dep, replica, started in rows:
        found.setdefault(UUID(hex=str(dep)), []).append(
            RecordedReplica(replica=str(replica), started_at=str(started))
        )
    return found


def deployments_owing_minutes(tx: Tx) -> list[UUID]:
    """The meter's candidates: live deployments, and ended ones not metered to their end."""
    return [UUID(hex=str(row[0])) for row in tx.execute(_OWING_MINUTES, [*SERVING, *ENDED])]


def stored_ids(tx: Tx) -> dict[str, set[str]]:
    """Every deployment id each table of this view holds, as stored (for consistency checks)."""
    return {
        "deployments": {str(r[0]) for r in tx.execute("SELECT id FROM deployments")},
        "replicas": {str(r[0]) for r in tx.execute("SELECT deployment_id FROM replicas")},
        "replica_tokens": {str(r[0]) for r in tx.execute("SELECT deployment_id FROM replica_tokens")},
        "sla_breaches": {str(r[0]) for r in tx.execute("SELECT deployment_id FROM sla_breaches")},
    }


class Watched(msgspec.Struct, frozen=True, kw_only=True):
    """A running deployment the autoscaler or the SLA evaluator watches, with its replicas."""

    id: UUID
    capacity: int
    policy: Autoscaling | None
    sla: SlaTargets
    replicas: list[ReplicaRoute]


def running_deployments(tx: Tx) -> list[Watched]:
    """Every running deployment with its autoscaling policy (None if never set), SLA targets
    and replicas: what the autoscaler and the SLA evaluator poll."""
    rows = tx.execute(
        "SELECT d.id, d.capacity, p.policy, d.sla FROM deployments d"
        " LEFT JOIN autoscaling_policies p ON p.deployment_id = d.id"
        " WHERE d.state = %s ORDER BY d.id",
        ["running"],
    )
    watched = []
    for dep, capacity, policy, sla in rows:
        dep_id = UUID(hex=str(dep))
        watched.append(
            Watched(
                id=dep_id,
                capacity=int(capacity),
                policy=None if policy is None else msgspec.json.decode(str(policy), type=Autoscaling),
                sla=msgspec.json.decode(str(sla), type=SlaTargets),
                replicas=serving_replicas(tx, dep_id),
            )
        )
    return watched


class ReplicaCount(msgspec.Struct, frozen=True, kw_only=True):
    """Live deployments of one model in one state, and the replicas recorded for them."""

    model: str
    state: str
    deployments: int
    replicas: int


def replica_counts(tx: Tx) -> list[ReplicaCount]:
    """Per model and state, the deployments not yet destroyed and their replicas (for /metrics)."""
    rows = tx.execute(
        "SELECT model, state, count(*), COALESCE(sum(replicas), 0) FROM deployments"
        " WHERE state NOT IN (%s, %s) GROUP BY model, state ORDER BY model, state",
        ["destroyed", "failed"],
    )
    return [
        ReplicaCount(model=str(model), state=str(state), deployments=int(n), replicas=int(replicas))
        for model, state, n, replicas in rows
    ]


_SERVING_MODEL = (
    f"SELECT id FROM deployments WHERE account_id = %s AND model = %s AND state IN ({_marks(SERVING)})"  # noqa: S608 - placeholders only
    " ORDER BY created_at"
)


def serving_deployments_of(tx: Tx, account_id: str, model: str) -> list[UUID]:
    """The account's deployments of ``model`` that serve now, oldest first."""
    return [UUID(hex=str(row[0])) for row in tx.execute(_SERVING_MODEL, [account_id, model, *SERVING])]
