"""The deployment's commands: each guards its rules and returns its event at the next version.

A command never changes a deployment; it decides which fact happens. The lifecycle table
(``lifecycle.LIFECYCLE``) is the guard every command shares, so a command can never record
an event that folding would refuse to replay. Metering's command is in ``metering``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import NamedTuple
from uuid import UUID, uuid4

from modelyard.domain.accounts.aggregate import Account, CreditReserved
from modelyard.domain.accounts.reservations import reserve
from modelyard.domain.billing.pricing import check_capacity, check_tier, minute_price
from modelyard.domain.catalog.fit import HostCapacity, check_fit
from modelyard.domain.catalog.hardware import check_gpu_fit, check_region, parse_preset
from modelyard.domain.catalog.models import ModelSpec, Plan, check_plan, deployable_model
from modelyard.domain.catalog.plans import PLAN_QUOTAS, Quota
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.aggregate import Deployment
from modelyard.domain.deployments.lifecycle import state_after
from modelyard.domain.deployments.policies import check_autoscaling, check_sla
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import InsufficientCredits, InvalidRequest
from modelyard.domain.shared.events import DomainEvent
from modelyard.domain.shared.time import require_utc


class Admitted(NamedTuple):
    """A new deployment and the account's hold for it: recorded together, or not at all."""

    requested: ev.DeploymentRequested
    reserved: CreditReserved


def hold_of(deployment: Deployment, *capacities: int) -> tuple[int, int]:
    """(amount, replicas) a deployment holds: one minute at the largest of ``capacities``."""
    largest = max(capacities)
    return minute_price(tier=deployment.tier, size=deployment.size, capacity=largest), largest


def request_deployment(
    account: Account,
    *,
    model: str,
    capacity: int = 1,
    tier: str = "dedicated",
    name: str = "",
    gpu_type: str | None = None,
    region: str | None = None,
    preset: str = "balanced",
    at: datetime,
    prefix: str = ids.INSTANCE,
    quotas: Mapping[Plan, Quota] = PLAN_QUOTAS,
    deployment_id: UUID | None = None,
    host: HostCapacity | None = None,
    uploaded: ModelSpec | None = None,
) -> Admitted:
    """A new deployment for ``account``, provisioning, if the catalog, hardware, quota and credit allow.

    The model must be deployable and within the account's plan, the capacity 1, 2, 4 or 8
    and allowed by the tier, the preset, GPU type and region known and the model fit the
    GPU; then the plan's quota must have room and the available credit cover the hold (its first minute; see
    ``accounts.aggregate``). Checked in that order, so the first thing wrong is what is
    reported. ``prefix`` only records which dialect asked; ``deployment_id`` is the new
    id if the caller chose it (else a random one). With ``host`` (what the cluster can
    place), a deployment no placement there could serve is refused now (``fit``).
    ``uploaded`` is the entry of a ``byom:<name>`` model (the account's own upload), which
    the catalog does not hold.
    """
    spec = (
        uploaded
        if uploaded is not None and uploaded.id == model
        else check_plan(account.plan, deployable_model(model))
    )
    checked = check_capacity(capacity)
    parsed_tier = check_tier(tier, spec.size, checked)
    parsed_preset = parse_preset(preset)
    if gpu_type is not None:
        check_gpu_fit(spec, gpu_type, parsed_preset)
    if region is not None:
        check_region(region)
    # An uploaded GGUF is served by llama.cpp on any host; catalog models must fit this cluster.
    if host is not None and spec is not uploaded:
        check_fit(spec, host, gpu_type=gpu_type, region=region, preset=parsed_preset)
    requested = ev.DeploymentRequested(
        originator_id=deployment_id or uuid4(),
        originator_version=1,
        timestamp=at,
        account_id=account.id,
        prefix=prefix,
        name=name or model,
        model=model,
        size=spec.size,
        tier=parsed_tier,
        capacity=checked,
        gpu_type=gpu_type,
        region=region,
        preset=parsed_preset,
    )
    held = reserve(
        account,
        deployment_id=requested.originator_id,
        amount=minute_price(tier=parsed_tier, size=spec.size, capacity=checked),
        replicas=checked,
        at=at,
        quotas=quotas,
    )
    return Admitted(requested=requested, reserved=held)


def _guard(deployment: Deployment, event_type: type[DomainEvent]) -> int:
    """The next version, once the lifecycle allows ``event_type`` now (else ILLEGAL_TRANSITION)."""
    state_after(deployment.state, event_type)
    return deployment.version + 1


def start_replica(
    deployment: Deployment, replica: str, base_url: str, at: datetime, token: str = ""
) -> ev.ReplicaStarted:
    """A replica came up healthy and answers at ``base_url`` to calls that carry ``token``."""
    version = _guard(deployment, ev.ReplicaStarted)
    return ev.ReplicaStarted(
        originator_id=deployment.id,
        originator_version=version,
        timestamp=at,
        replica=replica,
        base_url=base_url,
        token=token,
    )


def lose_replica(
    deployment: Deployment, replica: str, reason: str, at: datetime, lost_at: datetime | None = None
) -> ev.ReplicaLost:
    """A replica died, stopped answering, or was stopped on purpose.

    ``lost_at``, when given, is when it stopped serving (known after the fact, as for the
    replicas of a process that crashed); it must be UTC and not after ``at``.
    """
    version = _guard(deployment, ev.ReplicaLost)
    if lost_at is not None and require_utc(lost_at, "lost_at") > at:
        raise InvalidRequest("A replica cannot be lost after its loss is recorded.")
    return ev.ReplicaLost(
        originator_id=deployment.id,
        originator_version=version,
        timestamp=at,
        replica=replica,
        reason=reason,
        lost_at=lost_at,
    )


def activate(deployment: Deployment, at: datetime) -> ev.DeploymentActivated:
    """Enough replicas serve: running, and billing starts."""
    version = _guard(deployment, ev.DeploymentActivated)
    return ev.DeploymentActivated(originator_id=deployment.id, originator_version=version, timestamp=at)


def fail_provisioning(deployment: Deployment, reason: str, at: datetime) -> ev.ProvisioningFailed:
    """The deployment cannot be placed or started."""
    version = _guard(deployment, ev.ProvisioningFailed)
    return ev.ProvisioningFailed(
        originator_id=deployment.id, originator_version=version, timestamp=at, reason=reason
    )


def await_capacity(deployment: Deployment, reason: str, at: datetime) -> ev.CapacityAwaited | None:
    """No node has room for its replicas now; None when it already waits (one event a wait)."""
    version = _guard(deployment, ev.CapacityAwaited)
    if deployment.awaiting_capacity_since is not None:
        return None
    return ev.CapacityAwaited(
        originator_id=deployment.id, originator_version=version, timestamp=at, reason=reason
    )


def request_scale(deployment: Deployment, capacity: int, at: datetime, reason: str = "") -> ev.ScaleRequested:
    """Ask for another capacity (1, 2, 4 or 8), saying why if the autoscaler asks; the shared
    tier does not scale."""
    checked = check_capacity(capacity)
    check_tier(deployment.tier, deployment.size, checked)
    version = _guard(deployment, ev.ScaleRequested)
    return ev.ScaleRequested(
        originator_id=deployment.id, originator_version=version, timestamp=at, capacity=checked, reason=reason
    )


def finish_scale(deployment: Deployment, capacity: int, at: datetime) -> ev.ScaledTo:
    """The replicas now number ``capacity``."""
    checked = check_capacity(capacity)
    version = _guard(deployment, ev.ScaledTo)
    return ev.ScaledTo(
        originator_id=deployment.id, originator_version=version, timestamp=at, capacity=checked
    )


def scale_to_zero(deployment: Deployment, at: datetime, reason: str = "") -> ev.ScaledToZero:
    """Idle: release every replica, and billing stops."""
    version = _guard(deployment, ev.ScaledToZero)
    return ev.ScaledToZero(
        originator_id=deployment.id, originator_version=version, timestamp=at, reason=reason
    )


def wake(deployment: Deployment, at: datetime) -> ev.WakeRequested:
    """A request came for a deployment scaled to zero: cold-start it."""
    version = _guard(deployment, ev.WakeRequested)
    if deployment.held_for_balance:
        raise InsufficientCredits(
            "This deployment was scaled to zero because its account's balance is low;"
            " add credits and it wakes."
        )
    return ev.WakeRequested(originator_id=deployment.id, originator_version=version, timestamp=at)


def degrade(deployment: Deployment, reason: str, at: datetime) -> ev.DeploymentDegraded:
    """Serving with fewer replicas than asked for."""
    version = _guard(deployment, ev.DeploymentDegraded)
    return ev.DeploymentDegraded(
        originator_id=deployment.id, originator_version=version, timestamp=at, reason=reason
    )


def recover(deployment: Deployment, at: datetime) -> ev.DeploymentRecovered:
    """Back to full strength."""
    version = _guard(deployment, ev.DeploymentRecovered)
    return ev.DeploymentRecovered(originator_id=deployment.id, originator_version=version, timestamp=at)


def set_autoscaling(deployment: Deployment, policy: ev.Autoscaling, at: datetime) -> ev.AutoscalingSet:
    """Replace the autoscaling policy (within ``policies``' bounds; the shared tier does not scale)."""
    version = _guard(deployment, ev.AutoscalingSet)
    policy = check_autoscaling(deployment.tier, policy)
    return ev.AutoscalingSet(
        originator_id=deployment.id, originator_version=version, timestamp=at, policy=policy
    )


def set_sla(deployment: Deployment, targets: ev.SlaTargets, at: datetime) -> ev.SlaTargetsSet:
    """Replace the SLA targets (within ``policies``' bounds)."""
    version = _guard(deployment, ev.SlaTargetsSet)
    targets = check_sla(targets)
    return ev.SlaTargetsSet(
        originator_id=deployment.id, originator_version=version, timestamp=at, targets=targets
    )


def record_sla_breach(
    deployment: Deployment, metric: ev.SlaMetric, value: float, target: float, at: datetime
) -> ev.SlaBreached:
    """A target was missed; the figures must be finite (events are JSON, which has no infinity)."""
    if not (math.isfinite(value) and math.isfinite(target)):
        raise InvalidRequest("An SLA breach needs finite figures.")
    version = _guard(deployment, ev.SlaBreached)
    return ev.SlaBreached(
        originator_id=deployment.id,
        originator_version=version,
        timestamp=at,
        metric=metric,
        value=value,
        target=target,
    )


def record_sla_recovery(deployment: Deployment, metric: ev.SlaMetric, at: datetime) -> ev.SlaRecovered:
    """A missed target is met again."""
    version = _guard(deployment, ev.SlaRecovered)
    return ev.SlaRecovered(
        originator_id=deployment.id, originator_version=version, timestamp=at, metric=metric
    )


def request_teardown(deployment: Deployment, at: datetime) -> ev.TeardownRequested:
    """Destroy: billing stops now; the replicas are stopped downstream."""
    version = _guard(deployment, ev.TeardownRequested)
    return ev.TeardownRequested(originator_id=deployment.id, originator_version=version, timestamp=at)


def mark_destroyed(deployment: Deployment, at: datetime) -> ev.Destroyed:
    """Every replica is gone."""
    version = _guard(deployment, ev.Destroyed)
    return ev.Destroyed(originator_id=deployment.id, originator_version=version, timestamp=at)
