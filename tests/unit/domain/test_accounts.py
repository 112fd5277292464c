"""Account commands: their guards, error codes, and how events fold into the balance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from modelyard.domain.accounts.aggregate import (
    Account,
    AccountOpened,
    CreditsAdded,
    CreditsCharged,
    CreditsExhausted,
    add_credits,
    add_member,
    charge_minute,
    open_account,
    project_account,
    remove_member,
)
from modelyard.domain.catalog.models import Plan
from modelyard.domain.shared.errors import DuplicateMinute, InvalidAmount, InvalidRequest

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
DEP = uuid4()


def _account(balance: int = 0, plan: str = "free") -> Account:
    opened = open_account(name="acme", plan=plan, at=T0)
    account = project_account(None, [opened])
    assert account is not None
    if balance:
        account = project_account(account, [add_credits(account, balance, T0)])
    assert account is not None
    return account


def _charge(account: Account, minute: datetime, amount: int) -> Account:
    events = charge_minute(account, deployment_id=DEP, minute=minute, amount=amount, metered_version=3, at=T0)
    folded = project_account(account, events)
    assert folded is not None
    return folded


def test_an_opened_account_has_a_plan_and_nothing_to_spend() -> None:
    event = open_account(name="acme", plan="professional", at=T0)
    assert isinstance(event, AccountOpened)
    assert event.originator_version == 1
    assert event.timestamp == T0
    account = project_account(None, [event])
    assert account is not None
    assert (account.name, account.plan, account.balance, account.exhausted) == (
        "acme",
        Plan.PROFESSIONAL,
        0,
        False,
    )


@pytest.mark.parametrize(
    ("name", "plan", "match"), [("  ", "free", "name"), ("acme", "gold", "Unknown plan")]
)
def test_opening_needs_a_name_and_a_known_plan(name: str, plan: str, match: str) -> None:
    with pytest.raises(InvalidRequest, match=match) as caught:
        open_account(name=name, plan=plan, at=T0)
    assert caught.value.code == "INVALID_REQUEST"


def test_credits_add_up_exactly() -> None:
    account = _account(1_250_000)
    event = add_credits(account, 7, T0)
    assert isinstance(event, CreditsAdded)
    assert event.originator_version == account.version + 1
    after = project_account(account, [event])
    assert after is not None
    assert after.balance == 1_250_007


@pytest.mark.parametrize("amount", [0, -1, -5_000_000, 1.5, 2.0, True, "100", None, 10**15 + 1])
def test_credits_must_be_a_positive_whole_number_of_micros_within_a_top_up(amount: object) -> None:
    with pytest.raises(InvalidAmount, match=r"positive whole number|at most") as caught:
        add_credits(_account(), amount, T0)  # type: ignore[arg-type]
    assert caught.value.code == "INVALID_AMOUNT"


def test_a_charge_names_the_deployment_minute_and_metering_event() -> None:
    account = _account(10_000)
    events = charge_minute(account, deployment_id=DEP, minute=T0, amount=2_500, metered_version=4, at=T0)
    assert len(events) == 1
    charged = events[0]
    assert isinstance(charged, CreditsCharged)
    assert (charged.deployment_id, charged.minute, charged.amount, charged.metered_version) == (
        DEP,
        T0,
        2_500,
        4,
    )
    after = project_account(account, events)
    assert after is not None
    assert after.balance == 7_500
    assert after.charged_through[DEP] == T0


def test_the_same_minute_or_an_earlier_one_is_never_charged_twice() -> None:
    account = _charge(_account(10_000), T0 + timedelta(minutes=1), 100)
    for minute in (T0, T0 + timedelta(minutes=1)):
        with pytest.raises(DuplicateMinute, match="already charged") as caught:
            charge_minute(account, deployment_id=DEP, minute=minute, amount=1, metered_version=9, at=T0)
        assert caught.value.code == "DUPLICATE_MINUTE"
    # Another deployment's minute is its own.
    other = charge_minute(account, deployment_id=uuid4(), minute=T0, amount=1, metered_version=2, at=T0)
    assert len(other) == 1


def test_a_negative_charge_is_refused() -> None:
    with pytest.raises(InvalidAmount):
        charge_minute(_account(10), deployment_id=DEP, minute=T0, amount=-1, metered_version=2, at=T0)


def test_reaching_zero_raises_credits_exhausted_once() -> None:
    account = _charge(_account(3_000), T0, 2_500)
    assert not account.exhausted
    events = charge_minute(
        account, deployment_id=DEP, minute=T0 + timedelta(minutes=1), amount=2_500, metered_version=5, at=T0
    )
    assert [type(e) for e in events] == [CreditsCharged, CreditsExhausted]
    exhausted = events[1]
    assert isinstance(exhausted, CreditsExhausted)
    assert exhausted.balance == -2_000
    assert [e.originator_version for e in events] == [account.version + 1, account.version + 2]
    account = project_account(account, events)
    assert account is not None
    assert account.exhausted
    # One tick below zero; the next charge is recorded but says nothing new.
    later = charge_minute(
        account, deployment_id=DEP, minute=T0 + timedelta(minutes=2), amount=10, metered_version=6, at=T0
    )
    assert [type(e) for e in later] == [CreditsCharged]


def test_exactly_zero_is_exhausted_and_a_top_up_clears_it() -> None:
    account = _charge(_account(2_500), T0, 2_500)
    assert account.balance == 0
    assert account.exhausted
    topped = project_account(account, [add_credits(account, 1, T0)])
    assert topped is not None
    assert not topped.exhausted
    assert topped.balance == 1


def test_a_top_up_that_leaves_the_balance_negative_keeps_it_exhausted() -> None:
    account = _charge(_account(100), T0, 2_500)
    assert account.exhausted
    topped = project_account(account, [add_credits(account, 1_000, T0)])
    assert topped is not None
    assert topped.balance == -1_400
    assert topped.exhausted


def test_an_organisation_lets_members_do_what_they_were_granted() -> None:
    org, member = _account(), uuid4()
    added = add_member(org, member, ["deployment:invoke", "deployment:invoke"], T0)
    assert added.permissions == ("deployment:invoke",)
    org = project_account(org, [added])
    assert org is not None
    assert org.allows(member, "deployment:invoke")
    assert not org.allows(member, "deployment:manage")
    assert not org.allows(uuid4(), "deployment:invoke")
    org = project_account(org, [remove_member(org, member, T0)])
    assert org is not None
    assert not org.allows(member, "deployment:invoke")
    with pytest.raises(InvalidRequest, match="not a member"):
        remove_member(org, member, T0)


@pytest.mark.parametrize(
    ("permissions", "match"),
    [([], "non-empty"), ("deployment:invoke", "non-empty"), (["deployment:delete"], "Unknown permissions")],
)
def test_membership_needs_known_permissions(permissions: object, match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        add_member(_account(), uuid4(), permissions, T0)


def test_an_account_is_a_member_once_and_never_of_itself() -> None:
    org, member = _account(), uuid4()
    with pytest.raises(InvalidRequest, match="itself"):
        add_member(org, org.id, ["deployment:invoke"], T0)
    org = project_account(org, [add_member(org, member, ["deployment:invoke"], T0)])
    assert org is not None
    with pytest.raises(InvalidRequest, match="already a member"):
        add_member(org, member, ["deployment:manage"], T0)
