"""THE price table (FEATURES D2) and the charge for runtime inside one minute.

Prices are integer micro-dollars per hour at 1x; capacity multipliers are integer tenths
(1.8x is 18). A charge for ``s`` seconds is ``hourly * tenths * s // 36_000``: pro-rated to
the second, rounded down once per minute, so a minute is never charged more than its exact
price and at most one micro-dollar less.

Billing follows the replicas actually serving (``deployments.aggregate``): ``serving`` of
``capacity`` replicas bill the capacity's multiplier times ``serving / capacity``. All
serving gives the table's price exactly; fewer give their share of it (two of four
replicas: 3.3x / 2 = 1.65x); none, nothing. Every share has a denominator dividing 8 (the
largest capacity), so a minute's charge stays one integer division, rounded down once.
"""

from __future__ import annotations

from enum import StrEnum

from modelyard.domain.catalog.models import Size
from modelyard.domain.shared.errors import InvalidCapacity, InvalidRequest


class Tier(StrEnum):
    """Shared pool or private replicas (FEATURES A6)."""

    SHARED = "shared"
    DEDICATED = "dedicated"


SHARED_HOURLY = 50_000
DEDICATED_HOURLY: dict[Size, int] = {
    Size.SMALL: 150_000,
    Size.MEDIUM: 200_000,
    Size.LARGE: 650_000,
    Size.XL: 2_850_000,
}
CAPACITY_TENTHS: dict[int, int] = {1: 10, 2: 18, 4: 33, 8: 60}
SECONDS_PER_HOUR = 3600
# Rounding down once per minute loses strictly less than one micro-dollar per minute.
ROUNDING_BOUND_MICROS_PER_MINUTE = 1
# Every capacity divides this, so serving/capacity is a whole number of eighths.
SHARE_EIGHTHS = 8
# What the sum of a minute's ``part_numerator``s is divided by (once) to give micro-dollars.
MINUTE_DENOMINATOR = SECONDS_PER_HOUR * 10 * SHARE_EIGHTHS


def check_capacity(capacity: object) -> int:
    """The capacity if it is 1, 2, 4 or 8; anything else -> INVALID_CAPACITY."""
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity not in CAPACITY_TENTHS:
        raise InvalidCapacity(f"capacity must be 1, 2, 4, or 8; got {capacity!r}.")
    return capacity


def check_tier(tier: str, size: Size, capacity: int) -> Tier:
    """The tier if the model and capacity may use it: shared is small models at 1x only."""
    try:
        parsed = Tier(tier)
    except ValueError:
        raise InvalidRequest(f"tier must be 'shared' or 'dedicated'; got {tier!r}.") from None
    if parsed is Tier.SHARED and size is not Size.SMALL:
        raise InvalidRequest(f"The shared tier serves small models only; this model is {size.value}.")
    if parsed is Tier.SHARED and capacity != 1:
        raise InvalidCapacity("The shared tier has no capacity scaling; capacity must be 1.")
    return parsed


def hourly_micros(tier: Tier, size: Size) -> int:
    """The price of one hour at 1x."""
    return SHARED_HOURLY if tier is Tier.SHARED else DEDICATED_HOURLY[size]


def part_numerator(hourly: int, *, capacity: int, serving: int, seconds: int) -> int:
    """``seconds`` with ``serving`` of ``capacity`` replicas, in units of 1/MINUTE_DENOMINATOR
    micro-dollar: hourly x tenths x (serving/capacity) x seconds, kept whole."""
    if not 0 <= serving <= capacity:
        raise InvalidRequest(f"{serving} replicas cannot serve a capacity of {capacity}.")
    eighths = serving * (SHARE_EIGHTHS // check_capacity(capacity))
    return hourly * CAPACITY_TENTHS[capacity] * eighths * seconds


def charge_for(seconds: int, *, tier: Tier, size: Size, capacity: int) -> int:
    """What ``seconds`` of runtime inside one minute cost, in micro-dollars (rounded down)."""
    if not 0 <= seconds <= 60:
        raise InvalidRequest(f"A minute holds 0 to 60 seconds of runtime, not {seconds}.")
    tenths = CAPACITY_TENTHS[check_capacity(capacity)]
    return hourly_micros(tier, size) * tenths * seconds // (SECONDS_PER_HOUR * 10)


def minute_price(*, tier: Tier, size: Size, capacity: int) -> int:
    """A full minute's charge; what a balance must cover to start."""
    return charge_for(60, tier=tier, size=size, capacity=capacity)
