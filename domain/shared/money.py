"""Money is integer micro-dollars. Nothing here, or anywhere, is a float."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from modelyard.domain.shared.errors import InvalidAmount

MICROS_PER_DOLLAR = 1_000_000
# The largest single top-up, $1,000,000,000: far above any real one, and far enough below
# 2**63 micro-dollars that balances fit the views' 64-bit integer columns for ever.
MAX_CREDIT_MICROS = 10**15


def parse_usd(text: str) -> int:
    """``"12.50"`` -> 12_500_000 micro-dollars; refuses what is not a positive amount."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise InvalidAmount(f"{text!r} is not an amount of USD.") from None
    if not value.is_finite():
        raise InvalidAmount(f"{text!r} is not a finite amount of USD.")
    if value <= 0:
        raise InvalidAmount(f"The amount must be positive, got {text!r}.")
    micros = value * MICROS_PER_DOLLAR
    if micros != micros.to_integral_value():
        raise InvalidAmount(f"{text!r} is finer than a micro-dollar.")
    if micros > MAX_CREDIT_MICROS:
        most = format_usd(MAX_CREDIT_MICROS)
        raise InvalidAmount(f"{text!r} is more than one top-up may add ({most} USD).")
    return int(micros)


def format_usd(micros: int) -> str:
    """12_500_000 -> ``"12.500000"``: exact, six decimals."""
    sign = "-" if micros < 0 else ""
    whole, part = divmod(abs(micros), MICROS_PER_DOLLAR)
    return f"{sign}{whole}.{part:06d}"
