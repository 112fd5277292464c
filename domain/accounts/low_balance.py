"""An account's low-balance policy: when to warn, and when to degrade what allows it.

Two thresholds in micro-dollars. At ``notify_below`` the charge that crosses it sends
``account.credits_low`` (without a policy, the operator's ``MODELYARD_WEBHOOK_CREDITS_LOW_USD``).
Below ``degrade_below`` the account runs low: each deployment that allows it is scaled to
zero or moved to the ``cost`` preset (``domain/deployments/low_balance.py``), and moved
back once credit takes the balance to ``degrade_below`` or above. Only at zero are
deployments stopped (the exhaustion path of ``aggregate``). 0 turns a threshold off.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from modelyard.domain.accounts.aggregate import Account, LowBalancePolicy, LowBalancePolicySet
from modelyard.domain.shared.errors import InvalidAmount
from modelyard.domain.shared.money import MAX_CREDIT_MICROS, MICROS_PER_DOLLAR, format_usd


def parse_threshold(name: str, text: object) -> int:
    """A threshold in USD (``"2.50"``, a string) as micro-dollars; 0 or more, at most the credit cap."""
    if not isinstance(text, str):
        raise InvalidAmount(f'{name} must be an amount of USD as a string, like "2.50"; got {text!r}.')
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise InvalidAmount(f"{name} {text!r} is not an amount of USD.") from None
    if not value.is_finite():
        raise InvalidAmount(f"{name} {text!r} is not a finite amount of USD.")
    if value < 0:
        raise InvalidAmount(f"{name} cannot be negative, got {text!r}.")
    micros = value * MICROS_PER_DOLLAR
    if micros != micros.to_integral_value():
        raise InvalidAmount(f"{name} {text!r} is finer than a micro-dollar.")
    if micros > MAX_CREDIT_MICROS:
        raise InvalidAmount(
            f"{name} {text!r} is above the most an account can hold ({format_usd(MAX_CREDIT_MICROS)} USD)."
        )
    return int(micros)


def set_policy(
    account: Account, *, notify_below: int, degrade_below: int, at: datetime
) -> LowBalancePolicySet:
    """Replace the account's policy; degrading must not start above the warning."""
    for name, value in (("notify_below", notify_below), ("degrade_below", degrade_below)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CREDIT_MICROS:
            raise InvalidAmount(f"{name} must be 0 to {MAX_CREDIT_MICROS} micro-dollars, got {value!r}.")
    if degrade_below > notify_below:
        raise InvalidAmount(
            f"degrade_below ({format_usd(degrade_below)}) is above notify_below ({format_usd(notify_below)}):"
            " the account is warned before anything is degraded, so it must be at most notify_below."
        )
    return LowBalancePolicySet(
        originator_id=account.id,
        originator_version=account.version + 1,
        timestamp=at,
        policy=LowBalancePolicy(notify_below=notify_below, degrade_below=degrade_below),
    )


def notify_threshold(account: Account, default: int) -> int:
    """Below what ``account.credits_low`` is sent: the account's own policy, else ``default``."""
    return default if account.low_balance is None else account.low_balance.notify_below


def running_low(balance: int, policy: LowBalancePolicy | None) -> bool:
    """Whether the deployments that allow it should be degraded now."""
    return policy is not None and balance < policy.degrade_below
