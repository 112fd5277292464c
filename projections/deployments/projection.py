"""Fold deployment events into one row per deployment, plus its SLA breach history.

Every row names its deployment by ``uuid.hex``; ``prefix`` records which dialect created it,
and the dialects print the id (``inst_…``, ``dep_…``) from the hex.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.lifecycle import State, status_v1, status_v2, target_of
from modelyard.domain.shared.events import DomainEvent
from modelyard.projections.base import OneByOne, Tx
from modelyard.projections.common import account_ref, iso

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS deployments (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        prefix TEXT NOT NULL,
        name TEXT NOT NULL,
        model TEXT NOT NULL,
        size TEXT NOT NULL,
        tier TEXT NOT NULL,
        capacity INTEGER NOT NULL,
        pending_capacity INTEGER,
        gpu_type TEXT,
        region TEXT,
        preset TEXT NOT NULL,
        state TEXT NOT NULL,
        status_v1 TEXT NOT NULL,
        status_v2 TEXT NOT NULL,
        replicas INTEGER NOT NULL,
        failure_reason TEXT,
        autoscaling TEXT NOT NULL,
        sla TEXT NOT NULL,
        metered_through TEXT,
        charged BIGINT NOT NULL,
        version INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS deployments_account ON deployments (account_id, created_at)",
    """
    CREATE TABLE IF NOT EXISTS replicas (
        deployment_id TEXT NOT NULL,
        replica TEXT NOT NULL,
        base_url TEXT NOT NULL,
        started_at TEXT NOT NULL,
        PRIMARY KEY (deployment_id, replica)
    )
    """,
    # The token each replica checks, beside its row in ``replicas``. A table of its own, not a
    # column there: a views database made before tokens existed gains it by this CREATE alone.
    """
    CREATE TABLE IF NOT EXISTS replica_tokens (
        deployment_id TEXT NOT NULL,
        replica TEXT NOT NULL,
        token TEXT NOT NULL,
        PRIMARY KEY (deployment_id, replica)
    )
    """,
    # Deployments whose autoscaling policy was set (the autoscaler leaves the others alone: a
    # default policy is no ask to scale). A table of its own, for the reason above.
    """
    CREATE TABLE IF NOT EXISTS autoscaling_policies (
        deployment_id TEXT PRIMARY KEY,
        policy TEXT NOT NULL
    )
    """,
    # Deployments no node has room for now (``CapacityAwaited``), until they run, fail or go.
    """
    CREATE TABLE IF NOT EXISTS capacity_waits (
        deployment_id TEXT PRIMARY KEY,
        wait_reason TEXT NOT NULL,
        wait_since TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS sla_breaches (
        deployment_id TEXT NOT NULL,
        position BIGINT NOT NULL,
        metric TEXT NOT NULL,
        value DOUBLE PRECISION,
        target DOUBLE PRECISION,
        kind TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (deployment_id, position)
    )
    """,
)
_json = msgspec.json.Encoder()


def _state_columns(state: State) -> dict[str, Any]:
    return {"state": state.value, "status_v1": status_v1(state), "status_v2": status_v2(state)}


def _columns(event: DomainEvent, replicas: int) -> dict[str, Any]:
    """The columns an event changes (the aggregate already checked it was legal)."""
    columns: dict[str, Any] = {}
    state = target_of(type(event))
    if state is not None:
        columns |= _state_columns(state)
    match event:
        case ev.ReplicaStarted():
            columns["replicas"] = replicas + 1
        case ev.ReplicaLost():
            columns["replicas"] = max(0, replicas - 1)
        case ev.ProvisioningFailed(reason=reason) | ev.DeploymentDegraded(reason=reason):
            columns["failure_reason"] = reason
        case ev.ScaleRequested(capacity=capacity):
            columns["pending_capacity"] = capacity
        case ev.ScaledTo(capacity=capacity):
            columns |= {"capacity": capacity, "pending_capacity": None}
        case ev.AutoscalingSet(policy=policy):
            columns["autoscaling"] = _json.encode(policy).decode()
        case ev.SlaTargetsSet(targets=targets):
            columns["sla"] = _json.encode(targets).decode()
        case ev.PresetChanged(preset=preset):
            columns["preset"] = str(preset)
    if isinstance(event, ev.DeploymentRecovered):
        columns["failure_reason"] = None
    if isinstance(event, ev.ScaledToZero | ev.Destroyed | ev.ProvisioningFailed):
        columns["replicas"] = 0
    return columns


class DeploymentsProjection(OneByOne):
    """One row per deployment with both dialects' status names."""

    name = "deployments"
    schema: Sequence[str] = SCHEMA
    tables: Sequence[str] = (
        "deployments",
        "replicas",
        "replica_tokens",
        "sla_breaches",
        "autoscaling_policies",
        "capacity_waits",
    )

    def apply(self, tx: Tx, event: object, position: int) -> None:
        """Fold one event; events of other aggregates pass by."""
        if isinstance(event, ev.DeploymentRequested):
            self._insert(tx, event)
            return
        if not isinstance(event, DomainEvent) or type(event).__module__ != ev.__name__:
            return
        # One stored form for every deployment, whichever dialect created it: its UUID's hex.
        dep_id = event.originator_id.hex
        found = tx.execute("SELECT replicas FROM deployments WHERE id = %s", [dep_id])
        if not found:
            return
        if isinstance(event, ev.SlaBreached | ev.SlaRecovered):
            self._breach(tx, dep_id, event, position)
        self._track_replicas(tx, dep_id, event)
        self._track_wait(tx, dep_id, event)
        if isinstance(event, ev.AutoscalingSet):
            tx.execute(
                "INSERT INTO autoscaling_policies (deployment_id, policy) VALUES (%s, %s)"
                " ON CONFLICT (deployment_id) DO UPDATE SET policy = EXCLUDED.policy",
                [dep_id, _json.encode(event.policy).decode()],
            )
        if isinstance(event, ev.MinuteMetered):
            tx.execute(
                "UPDATE deployments SET metered_through = %s, charged = charged + %s WHERE id = %s",
                [iso(event.minute), event.amount, dep_id],
            )
        columns = _columns(event, int(found[0][0])) | {
            "version": event.originator_version,
            "updated_at": iso(event.timestamp),
        }
        assignments = ", ".join(f"{name} = %s" for name in columns)
        tx.execute(f"UPDATE deployments SET {assignments} WHERE id = %s", [*columns.values(), dep_id])  # noqa: S608

    def _insert(self, tx: Tx, e: ev.DeploymentRequested) -> None:
        row = {
            "id": e.originator_id.hex,
            "account_id": account_ref(e.account_id),
            "prefix": e.prefix,
            "name": e.name,
            "model": e.model,
            "size": e.size,
            "tier": e.tier,
            "capacity": e.capacity,
            "pending_capacity": None,
            "gpu_type": e.gpu_type,
            "region": e.region,
            "preset": e.preset,
            **_state_columns(State.PROVISIONING),
            "replicas": 0,
            "failure_reason": None,
            "autoscaling": _json.encode(ev.Autoscaling()).decode(),
            "sla": _json.encode(ev.SlaTargets()).decode(),
            "metered_through": None,
            "charged": 0,
            "version": e.originator_version,
            "created_at": iso(e.timestamp),
            "updated_at": iso(e.timestamp),
        }
        names = ", ".join(row)
        marks = ", ".join("%s" for _ in row)
        tx.execute(f"INSERT INTO deployments ({names}) VALUES ({marks})", list(row.values()))  # noqa: S608

    def _track_replicas(self, tx: Tx, dep_id: str, event: DomainEvent) -> None:
        if isinstance(event, ev.ReplicaStarted):
            tx.execute(
                "INSERT INTO replicas (deployment_id, replica, base_url, started_at) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (deployment_id, replica) DO UPDATE SET base_url = EXCLUDED.base_url,"
                " started_at = EXCLUDED.started_at",
                [dep_id, event.replica, event.base_url, iso(event.timestamp)],
            )
            tx.execute(
                "INSERT INTO replica_tokens (deployment_id, replica, token) VALUES (%s, %s, %s)"
                " ON CONFLICT (deployment_id, replica) DO UPDATE SET token = EXCLUDED.token",
                [dep_id, event.replica, event.token],
            )
        elif isinstance(event, ev.ReplicaLost):
            for table in ("replicas", "replica_tokens"):
                tx.execute(
                    f"DELETE FROM {table} WHERE deployment_id = %s AND replica = %s",  # noqa: S608 - names are code
                    [dep_id, event.replica],
                )
        elif isinstance(event, ev.ScaledToZero | ev.Destroyed | ev.ProvisioningFailed | ev.TeardownRequested):
            tx.execute("DELETE FROM replicas WHERE deployment_id = %s", [dep_id])
            tx.execute("DELETE FROM replica_tokens WHERE deployment_id = %s", [dep_id])

    def _track_wait(self, tx: Tx, dep_id: str, event: DomainEvent) -> None:
        if isinstance(event, ev.CapacityAwaited):
            tx.execute(
                "INSERT INTO capacity_waits (deployment_id, wait_reason, wait_since) VALUES (%s, %s, %s)"
                " ON CONFLICT (deployment_id) DO UPDATE SET wait_reason = EXCLUDED.wait_reason,"
                " wait_since = EXCLUDED.wait_since",
                [dep_id, event.reason, iso(event.timestamp)],
            )
        elif isinstance(event, ev.DeploymentActivated | ev.ProvisioningFailed | ev.TeardownRequested):
            tx.execute("DELETE FROM capacity_waits WHERE deployment_id = %s", [dep_id])

    def _breach(self, tx: Tx, dep_id: str, event: ev.SlaBreached | ev.SlaRecovered, position: int) -> None:
        value = event.value if isinstance(event, ev.SlaBreached) else None
        target = event.target if isinstance(event, ev.SlaBreached) else None
        kind = "breached" if isinstance(event, ev.SlaBreached) else "recovered"
        tx.execute(
            "INSERT INTO sla_breaches (deployment_id, position, metric, value, target, kind, at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [dep_id, position, event.metric, value, target, kind, iso(event.timestamp)],
        )
