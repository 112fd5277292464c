"""Which domain events become which webhook events, and what each one says.

A deployment's notice is owed to the subscriptions of that deployment that want its name,
in the order its events were stored; an account's notice to the subscriptions of every
deployment of the account. ``ordering_key`` is what deliveries are ordered by: the
deployment for its events, the account for the account's.

``account.credits_low`` is raised by a charge that takes the balance from at least the
threshold (the account's ``notify_below``, else the operator's) to below it (``credits_low``);
the low-balance steps (``domain/accounts/low_balance.py``) raise ``deployment.scaled`` (to
zero, and waking when credit came back) and ``deployment.preset_changed``, with their reason;
``account.credits_exhausted`` names the deployments the exhaustion stops (the caller knows
which are live).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from modelyard.domain.deployments import events as ev
from modelyard.domain.shared import ids
from modelyard.domain.shared.events import DomainEvent
from modelyard.domain.shared.money import format_usd


class Notice(msgspec.Struct, frozen=True, kw_only=True):
    """A webhook event about to be sent: its name, whom it concerns, and its ``data``."""

    name: str
    at: datetime
    # Set for a deployment's notice: only that deployment's subscriptions get it.
    deployment_id: UUID | None
    # Set for an account's notice: every subscription of the account gets it.
    account_id: UUID | None
    data: dict[str, Any]

    @property
    def ordering_key(self) -> str:
        """Deliveries with the same key are sent one after the other, in event order."""
        if self.deployment_id is not None:
            return self.deployment_id.hex
        assert self.account_id is not None
        return ids.public_id(ids.ACCOUNT, self.account_id)


def _deployment_data(deployment_id: UUID) -> dict[str, Any]:
    # Both dialects' spellings of the one id, so either kind of client finds its deployment.
    return {
        "deployment_id": ids.deployment_ref(deployment_id),
        "instance_id": ids.instance_ref(deployment_id),
    }


def deployment_notice(event: object) -> Notice | None:
    """The webhook event a deployment event raises, or None."""
    name: str
    extra: dict[str, Any] = {}
    match event:
        case ev.DeploymentActivated():
            name = "deployment.active"
        case ev.DeploymentDegraded(reason=reason):
            name, extra = "deployment.degraded", {"reason": reason}
        case ev.DeploymentRecovered():
            name, extra = "deployment.recovered", {"cause": "replicas"}
        case ev.SlaBreached(metric=metric, value=value, target=target):
            name, extra = "deployment.sla_breach", {"metric": str(metric), "value": value, "target": target}
        case ev.SlaRecovered(metric=metric):
            name, extra = "deployment.recovered", {"cause": "sla", "metric": str(metric)}
        case ev.ScaledTo(capacity=capacity):
            name, extra = "deployment.scaled", {"replicas": capacity}
        case ev.ScaledToZero(reason=reason, for_balance=for_balance):
            name, extra = "deployment.scaled", {"replicas": 0, "scaled_to_zero": True}
            extra |= {"reason": reason, "for_balance": True} if for_balance else {}
        case ev.WakeRequested(reason=reason) if reason:
            # Woken by credit after a low balance (a request's wake sends nothing).
            name, extra = "deployment.scaled", {"waking": True, "reason": reason}
        case ev.PresetChanged(preset=preset, reason=reason, held_from=held_from):
            name, extra = "deployment.preset_changed", {"preset": str(preset), "reason": reason}
            extra |= {"restores_to": str(held_from)} if held_from is not None else {}
        case _:
            return None
    assert isinstance(event, DomainEvent)
    return Notice(
        name=name,
        at=event.timestamp,
        deployment_id=event.originator_id,
        account_id=None,
        data=_deployment_data(event.originator_id) | extra,
    )


def credits_low(
    account_id: UUID, *, balance_after: int, charged: int, threshold: int, at: datetime
) -> Notice | None:
    """``account.credits_low`` if this charge took the balance below ``threshold``, else None."""
    if threshold <= 0 or not balance_after < threshold <= balance_after + charged:
        return None
    return Notice(
        name="account.credits_low",
        at=at,
        deployment_id=None,
        account_id=account_id,
        data={
            "account_id": ids.public_id(ids.ACCOUNT, account_id),
            "balance_usd": format_usd(balance_after),
            "threshold_usd": format_usd(threshold),
        },
    )


def credits_exhausted(account_id: UUID, *, balance: int, stopped: Sequence[UUID], at: datetime) -> Notice:
    """``account.credits_exhausted``, naming the deployments the exhaustion stops."""
    return Notice(
        name="account.credits_exhausted",
        at=at,
        deployment_id=None,
        account_id=account_id,
        data={
            "account_id": ids.public_id(ids.ACCOUNT, account_id),
            "balance_usd": format_usd(balance),
            "stopped_deployments": [_deployment_data(d) for d in sorted(stopped)],
        },
    )
