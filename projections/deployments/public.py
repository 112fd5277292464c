"""Read the deployments view as the second dialect shows it: hardware, preset, policies, breaches.

Beside ``queries`` (which the first dialect, the gateway and the workers read) so each
dialect's reads stay in one place; both read the same rows.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec

from modelyard.domain.deployments import events as ev
from modelyard.projections.base import Tx
from modelyard.projections.deployments.queries import WITH_WAIT, CapacityWait, capacity_wait


class PublicDeployment(msgspec.Struct, frozen=True, kw_only=True):
    """One deployments row with everything the second dialect shows."""

    id: UUID
    account_id: str
    name: str
    model: str
    size: str
    tier: str
    capacity: int
    pending_capacity: int | None
    gpu_type: str | None
    region: str | None
    preset: str
    state: str
    status: str
    replicas: int
    failure_reason: str | None
    waiting_for_capacity: CapacityWait | None
    autoscaling: ev.Autoscaling
    sla: ev.SlaTargets
    charged: int
    created_at: str
    updated_at: str


class SlaEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A breach of an SLA target (with the figure and the target), or its recovery."""

    metric: str
    kind: str
    value: float | None
    target: float | None
    at: str


_COLUMNS = (
    "SELECT id, account_id, name, model, size, tier, capacity, pending_capacity, gpu_type, region,"
    " preset, state, status_v2, replicas, failure_reason, wait_reason, wait_since, autoscaling, sla,"
    " charged, created_at, updated_at" + WITH_WAIT
)


def _row(row: tuple[Any, ...]) -> PublicDeployment:
    (dep, account, name, model, size, tier, capacity, pending, gpu, region, preset, state, status,
     replicas, reason, wait_reason, wait_since, autoscaling, sla, charged, created,
     updated) = row  # fmt: skip
    return PublicDeployment(
        id=UUID(hex=str(dep)),
        account_id=str(account),
        name=str(name),
        model=str(model),
        size=str(size),
        tier=str(tier),
        capacity=int(capacity),
        pending_capacity=None if pending is None else int(pending),
        gpu_type=None if gpu is None else str(gpu),
        region=None if region is None else str(region),
        preset=str(preset),
        state=str(state),
        status=str(status),
        replicas=int(replicas),
        failure_reason=None if reason is None else str(reason),
        waiting_for_capacity=capacity_wait(wait_reason, wait_since),
        autoscaling=msgspec.json.decode(str(autoscaling), type=ev.Autoscaling),
        sla=msgspec.json.decode(str(sla), type=ev.SlaTargets),
        charged=int(charged),
        created_at=str(created),
        updated_at=str(updated),
    )


def deployments_of_account(tx: Tx, account_id: str) -> list[PublicDeployment]:
    """The account's deployments, oldest first, ended ones included."""
    rows = tx.execute(f"{_COLUMNS} WHERE account_id = %s ORDER BY created_at", [account_id])
    return [_row(row) for row in rows]


def deployment_of_account(tx: Tx, account_id: str, deployment_id: UUID) -> PublicDeployment | None:
    """One deployment if it belongs to the account (ended or not), else None."""
    rows = tx.execute(f"{_COLUMNS} WHERE account_id = %s AND id = %s", [account_id, deployment_id.hex])
    return _row(rows[0]) if rows else None


def sla_history(tx: Tx, deployment_id: UUID, limit: int = 100) -> list[SlaEvent]:
    """The deployment's latest SLA breaches and recoveries (at most ``limit``), oldest first."""
    rows = tx.execute(
        "SELECT metric, kind, value, target, at FROM sla_breaches WHERE deployment_id = %s"
        " ORDER BY position DESC LIMIT %s",
        [deployment_id.hex, limit],
    )
    return [
        SlaEvent(
            metric=str(metric),
            kind=str(kind),
            value=None if value is None else float(value),
            target=None if target is None else float(target),
            at=str(at),
        )
        for metric, kind, value, target, at in reversed(rows)
    ]
