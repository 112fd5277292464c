"""The low-balance service: the account's policy, each deployment's allowance, and the guard's steps.

``guard`` loads the deployment and its account, asks ``low_balance.decide`` for the step
due, and records it, with the account's hold released (scaled to zero) or taken again
(woken) in the same write. Two guards racing over one deployment both write its next
version; the loser decides again on the new state, where nothing is due any more.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from uuid import UUID

import msgspec

from modelyard.domain.accounts import aggregate as accounts
from modelyard.domain.accounts import low_balance as policy
from modelyard.domain.accounts import reservations
from modelyard.domain.catalog.models import Plan
from modelyard.domain.catalog.plans import PLAN_QUOTAS, Quota
from modelyard.domain.deployments import aggregate as deployments
from modelyard.domain.deployments import commands
from modelyard.domain.deployments.low_balance import Move, decide, parse_allowance, set_allowance, step_event
from modelyard.domain.shared.errors import AccountNotFound, ConcurrencyConflict, InstanceNotFound
from modelyard.domain.shared.events import DomainEvent
from modelyard.domain.shared.money import format_usd
from modelyard.domain.shared.store import Store

# As the deployments service: a lost race is decided again on fresh state, this often at most.
ATTEMPTS = 10


class SetLowBalancePolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Replace an account's thresholds (micro-dollars)."""

    account_id: UUID
    notify_below: int
    degrade_below: int
    at: datetime


class SetLowBalanceAllowance(msgspec.Struct, frozen=True, kw_only=True):
    """What a deployment allows when its account runs low: keep, scale_to_zero, cheaper_preset."""

    deployment_id: UUID
    on_low_balance: str
    at: datetime


class Guard(msgspec.Struct, frozen=True, kw_only=True):
    """Take the low-balance step due for one deployment now, if any."""

    deployment_id: UUID
    at: datetime


class Step(msgspec.Struct, frozen=True, kw_only=True):
    """A step taken: what, why, and where it was recorded."""

    move: Move
    reason: str
    position: int


def _reason(move: Move, account: accounts.Account) -> str:
    balance = format_usd(account.balance)
    below = format_usd(account.low_balance.degrade_below) if account.low_balance is not None else "none"
    if move in (Move.SCALE_TO_ZERO, Move.CHEAPER_PRESET):
        return f"low balance: {balance} USD is below degrade_below {below} USD"
    return f"credit restored: balance {balance} USD, degrade_below {below} USD"


class LowBalanceService:
    """Load, decide, record: every low-balance write goes through here."""

    def __init__(self, store: Store, quotas: Mapping[Plan, Quota] = PLAN_QUOTAS) -> None:
        self._store, self._quotas = store, quotas

    def _account(self, account_id: UUID) -> accounts.Account:
        return self._store.load(account_id, accounts.project_account, accounts.Account, AccountNotFound)

    def _deployment(self, deployment_id: UUID) -> deployments.Deployment:
        return self._store.load(
            deployment_id, deployments.project_deployment, deployments.Deployment, InstanceNotFound
        )

    def policy_of(self, account_id: UUID) -> accounts.LowBalancePolicy | None:
        """The account's policy, None if it never set one."""
        return self._account(account_id).low_balance

    def set_policy(self, command: SetLowBalancePolicy) -> int:
        """Replace the account's policy (an account event)."""
        event = policy.set_policy(
            self._account(command.account_id),
            notify_below=command.notify_below,
            degrade_below=command.degrade_below,
            at=command.at,
        )
        return self._store.record(event)

    def set_allowance(self, command: SetLowBalanceAllowance) -> int:
        """Record what the deployment allows when its account runs low (a deployment event)."""
        allowance = parse_allowance(command.on_low_balance)
        return self._store.record(
            set_allowance(self._deployment(command.deployment_id), allowance, command.at)
        )

    def guard(self, command: Guard) -> Step | None:
        """Take the step due for the deployment now; None when nothing is due."""
        for attempt in range(1, ATTEMPTS + 1):
            deployment = self._deployment(command.deployment_id)
            account = self._account(deployment.account_id)
            if account.exhausted:
                return None  # the exhaustion path stops what runs; credit clears it first
            move = decide(deployment, low=policy.running_low(account.balance, account.low_balance))
            if move is None:
                return None
            reason = _reason(move, account)
            events: list[DomainEvent] = [step_event(deployment, move, reason, command.at)]
            if move is Move.SCALE_TO_ZERO:
                released = reservations.release(account, deployment_id=deployment.id, at=command.at)
                events += [] if released is None else [released]
            elif move is Move.WAKE:
                amount, replicas = commands.hold_of(deployment, deployment.capacity)
                events.append(
                    reservations.reserve(
                        account,
                        deployment_id=deployment.id,
                        amount=amount,
                        replicas=replicas,
                        at=command.at,
                        quotas=self._quotas,
                    )
                )
            try:
                return Step(move=move, reason=reason, position=self._store.record(*events))
            except ConcurrencyConflict:
                if attempt == ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
