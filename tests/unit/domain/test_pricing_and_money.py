"""The price table and money parsing: exact integers, documented errors."""

from __future__ import annotations

import pytest

from modelyard.domain.billing.pricing import Tier, charge_for, check_capacity, check_tier, minute_price
from modelyard.domain.catalog.models import Size
from modelyard.domain.shared.errors import InvalidAmount, InvalidCapacity, InvalidRequest
from modelyard.domain.shared.money import format_usd, parse_usd


@pytest.mark.parametrize(
    ("tier", "size", "capacity", "per_minute"),
    [
        (Tier.SHARED, Size.SMALL, 1, 833),  # $0.05/h = 50_000/60 = 833.33
        (Tier.DEDICATED, Size.SMALL, 1, 2_500),  # $0.15/h
        (Tier.DEDICATED, Size.MEDIUM, 1, 3_333),  # $0.20/h
        (Tier.DEDICATED, Size.LARGE, 1, 10_833),  # $0.65/h
        (Tier.DEDICATED, Size.XL, 1, 47_500),  # $2.85/h
        (Tier.DEDICATED, Size.SMALL, 2, 4_500),  # 1.8x
        (Tier.DEDICATED, Size.LARGE, 4, 35_750),  # 650_000 * 3.3 / 60
        (Tier.DEDICATED, Size.XL, 8, 285_000),  # 2_850_000 * 6.0 / 60
    ],
)
def test_a_full_minute_costs_the_table_price(tier: Tier, size: Size, capacity: int, per_minute: int) -> None:
    assert minute_price(tier=tier, size=size, capacity=capacity) == per_minute


def test_seconds_are_pro_rated_and_rounded_down() -> None:
    assert charge_for(30, tier=Tier.DEDICATED, size=Size.SMALL, capacity=1) == 1_250
    assert charge_for(1, tier=Tier.DEDICATED, size=Size.SMALL, capacity=1) == 41  # 41.67
    assert charge_for(0, tier=Tier.DEDICATED, size=Size.XL, capacity=8) == 0
    with pytest.raises(InvalidRequest):
        charge_for(61, tier=Tier.DEDICATED, size=Size.SMALL, capacity=1)


@pytest.mark.parametrize("capacity", [0, 3, 5, 16, -1, "4", 4.0, True, None])
def test_capacity_other_than_1_2_4_8_is_invalid_capacity(capacity: object) -> None:
    with pytest.raises(InvalidCapacity) as caught:
        check_capacity(capacity)
    assert caught.value.code == "INVALID_CAPACITY"


def test_shared_tier_is_small_models_at_capacity_one() -> None:
    assert check_tier("shared", Size.SMALL, 1) is Tier.SHARED
    with pytest.raises(InvalidRequest, match="small models only"):
        check_tier("shared", Size.LARGE, 1)
    with pytest.raises(InvalidCapacity):
        check_tier("shared", Size.SMALL, 2)
    with pytest.raises(InvalidRequest, match="tier"):
        check_tier("premium", Size.SMALL, 1)


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("12.50", 12_500_000),
        ("0.000001", 1),
        ("7", 7_000_000),
        (" 1e3 ", 1_000_000_000),
        ("1000000000", 10**15),
    ],
)
def test_usd_parses_to_exact_micros(text: str, micros: int) -> None:
    assert parse_usd(text) == micros


@pytest.mark.parametrize(
    "text", ["-5", "0", "abc", "NaN", "Infinity", "0.0000001", "", "1e30", "1000000000.000001"]
)
def test_bad_amounts_are_refused(text: str) -> None:
    with pytest.raises(InvalidAmount):
        parse_usd(text)


def test_format_usd_is_exact() -> None:
    assert format_usd(12_500_000) == "12.500000"
    assert format_usd(-833) == "-0.000833"
