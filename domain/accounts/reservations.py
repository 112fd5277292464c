"""Holding credit for live deployments, within the plan's quota (the policy is in ``aggregate``).

Each command returns the account event to record in the same ``Store.record`` as the
deployment's own event: the account's next version is what two racing writers contend for.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from uuid import UUID

from modelyard.domain.accounts.aggregate import Account, CreditReleased, CreditReserved
from modelyard.domain.catalog.models import Plan
from modelyard.domain.catalog.plans import PLAN_QUOTAS, Quota
from modelyard.domain.shared.errors import InsufficientCredits, QuotaExceeded


def _check_quota(account: Account, deployment_id: UUID, replicas: int, quota: Quota) -> None:
    """A new deployment must fit the plan's count, and more replicas its replica total."""
    current = account.reservations.get(deployment_id)
    others = [r for d, r in account.reservations.items() if d != deployment_id]
    if current is None and len(others) + 1 > quota.deployments:
        raise QuotaExceeded(
            f"The {account.plan.value} plan runs at most {quota.deployments} deployments at once; "
            f"{len(others)} are live. Destroy one first."
        )
    growing = current is None or replicas > current.replicas
    in_use = sum(r.replicas for r in others)
    if growing and in_use + replicas > quota.replicas:
        raise QuotaExceeded(
            f"The {account.plan.value} plan runs at most {quota.replicas} replicas at once; "
            f"{in_use} run in other deployments and this one asks for {replicas}."
        )


def reserve(
    account: Account,
    *,
    deployment_id: UUID,
    amount: int,
    replicas: int,
    at: datetime,
    quotas: Mapping[Plan, Quota] = PLAN_QUOTAS,
) -> CreditReserved:
    """Hold ``amount`` and ``replicas`` for a deployment being admitted or grown.

    The quota is checked first, then the credit: what the hold grows by must be available
    (a first hold also needs a positive available balance). A smaller hold needs neither.
    """
    _check_quota(account, deployment_id, replicas, quotas[account.plan])
    current = account.reservations.get(deployment_id)
    growth = amount - (0 if current is None else current.amount)
    available = account.available
    if (growth > 0 or current is None) and (available < growth or available <= 0):
        raise InsufficientCredits(
            f"This needs {growth} micro-dollars of available credit (one minute at its price); "
            f"the balance is {account.balance} and live deployments hold {account.reserved}, "
            f"leaving {available}. Add credits or destroy an instance first."
        )
    return _held(account, deployment_id, amount, replicas, at)


def settle(
    account: Account, *, deployment_id: UUID, amount: int, replicas: int, at: datetime
) -> CreditReserved | None:
    """Set a deployment's hold to what it now runs, unchecked (a scale that finished).

    None when nothing changes, or when the deployment holds nothing (admitted before holds
    existed): a settled hold is never a new one.
    """
    current = account.reservations.get(deployment_id)
    if current is None or (current.amount, current.replicas) == (amount, replicas):
        return None
    return _held(account, deployment_id, amount, replicas, at)


def release(account: Account, *, deployment_id: UUID, at: datetime) -> CreditReleased | None:
    """Release an ended deployment's hold; None if it holds nothing."""
    if deployment_id not in account.reservations:
        return None
    return CreditReleased(
        originator_id=account.id,
        originator_version=account.version + 1,
        timestamp=at,
        deployment_id=deployment_id,
    )


def _held(account: Account, deployment_id: UUID, amount: int, replicas: int, at: datetime) -> CreditReserved:
    return CreditReserved(
        originator_id=account.id,
        originator_version=account.version + 1,
        timestamp=at,
        deployment_id=deployment_id,
        amount=amount,
        replicas=replicas,
    )
