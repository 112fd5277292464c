"""The account aggregate: a prepaid balance in micro-dollars, credited and charged by events.

It is also the consistency boundary for spending: every live deployment holds a
reservation here (``CreditReserved``), recorded in the same transaction as the deployment
event that admits or grows it. Two racing provisions both write the account's next
version, so one of them fails on optimistic concurrency and is re-decided on fresh state,
instead of both passing a check of the same stale balance.

The reservation policy: a live deployment (provisioning, running, scaling, degraded)
holds one minute at the full price of its capacity (the larger capacity while it scales)
and counts its replicas against the plan's quota. Admitting or growing a hold needs that
much *available* credit (balance minus every hold). Charges lower the balance and leave
the holds; a deployment that ends (torn down, failed, scaled to zero) releases its hold
(``CreditReleased``). The account is exhausted, and its deployments stopped, once a charge
leaves less than its holds (the next minute is no longer covered) or nothing at all, so
what is charged after that is at most one minute of what ran: one tick.
"""

from __future__ import annotations

from datetime import datetime
from functools import singledispatch
from uuid import UUID, uuid4

import msgspec

from modelyard.domain.catalog.models import Plan
from modelyard.domain.shared.errors import DuplicateMinute, InvalidAmount, InvalidRequest
from modelyard.domain.shared.events import Aggregate, DomainEvent, NotThisAggregate, projector, touched
from modelyard.domain.shared.money import MAX_CREDIT_MICROS


class AccountOpened(DomainEvent, frozen=True, kw_only=True):
    """An account was opened on a plan, with a zero balance."""

    name: str
    plan: Plan


class CreditsAdded(DomainEvent, frozen=True, kw_only=True):
    """Prepaid credits were added to the balance, in micro-dollars."""

    amount: int


class CreditsCharged(DomainEvent, frozen=True, kw_only=True):
    """One metered minute charged to the balance; names the event it came from."""

    deployment_id: UUID
    minute: datetime
    amount: int
    metered_version: int


class CreditsExhausted(DomainEvent, frozen=True, kw_only=True):
    """The balance reached zero: the account's deployments must stop."""

    balance: int


class CreditReserved(DomainEvent, frozen=True, kw_only=True):
    """A live deployment holds ``amount`` (one minute at its full price) and ``replicas``.

    Recorded with the event that admits or resizes the deployment; a later one for the
    same deployment replaces the hold.
    """

    deployment_id: UUID
    amount: int
    replicas: int


class CreditReleased(DomainEvent, frozen=True, kw_only=True):
    """A deployment ended (torn down, failed, scaled to zero): its hold is released."""

    deployment_id: UUID


class MemberAdded(DomainEvent, frozen=True, kw_only=True):
    """Another account joined this one as an organisation, with these permissions."""

    member_id: UUID
    permissions: tuple[str, ...]


class MemberRemoved(DomainEvent, frozen=True, kw_only=True):
    """A member account left this organisation."""

    member_id: UUID


class LowBalancePolicy(msgspec.Struct, frozen=True, kw_only=True):
    """When the account counts as running low (micro-dollars; 0 turns a threshold off).

    At ``notify_below`` a charge sends ``account.credits_low``; below ``degrade_below`` the
    deployments that allow it are moved to a cheaper preset or scaled to zero
    (``domain/accounts/low_balance.py``), and moved back once the balance is above it again.
    """

    notify_below: int
    degrade_below: int


class LowBalancePolicySet(DomainEvent, frozen=True, kw_only=True):
    """The account owner set (replaced) its low-balance policy."""

    policy: LowBalancePolicy


# What an organisation may let a member do (FEATURES C4); ``org:admin`` adds and removes
# members (the account that creates an organisation holds all three).
PERMISSIONS = ("deployment:invoke", "deployment:manage", "org:admin")


class Reservation(msgspec.Struct, frozen=True, kw_only=True):
    """What one live deployment holds: a minute's price, and its replicas for the quota."""

    amount: int
    replicas: int


class Account(Aggregate, frozen=True, kw_only=True):
    """Who pays, on which plan, with how much left."""

    name: str
    plan: Plan
    balance: int = 0
    exhausted: bool = False
    # deployment id -> last minute charged; refuses a second charge for the same minute.
    charged_through: dict[UUID, datetime] = {}
    # Organisation membership: member account id -> its permissions here.
    members: dict[UUID, tuple[str, ...]] = {}
    # Live deployment id -> what it holds (see the module's reservation policy).
    reservations: dict[UUID, Reservation] = {}
    # The owner's low-balance policy; None: the operator's default notice threshold only.
    low_balance: LowBalancePolicy | None = None

    @property
    def reserved(self) -> int:
        """Micro-dollars held by live deployments: what their next minute can cost."""
        return sum(r.amount for r in self.reservations.values())

    @property
    def available(self) -> int:
        """What a new deployment, or a bigger one, may hold: the balance less every hold."""
        return self.balance - self.reserved

    def allows(self, member_id: UUID, permission: str) -> bool:
        """Whether ``member_id`` is a member holding ``permission``."""
        return permission in self.members.get(member_id, ())


@singledispatch
def _mutate(event: DomainEvent, account: Account | None) -> Account | None:
    raise NotThisAggregate(f"{type(event).__name__} is not an account event")


@_mutate.register
def _(event: AccountOpened, _: None) -> Account:
    return Account(
        id=event.originator_id,
        version=event.originator_version,
        created_on=event.timestamp,
        modified_on=event.timestamp,
        name=event.name,
        plan=event.plan,
    )


@_mutate.register
def _(event: CreditsAdded, account: Account) -> Account:
    balance = account.balance + event.amount
    return touched(account, event, balance=balance, exhausted=account.exhausted and balance <= 0)


@_mutate.register
def _(event: CreditsCharged, account: Account) -> Account:
    through = {**account.charged_through, event.deployment_id: event.minute}
    return touched(account, event, balance=account.balance - event.amount, charged_through=through)


@_mutate.register
def _(event: CreditsExhausted, account: Account) -> Account:
    return touched(account, event, exhausted=True)


@_mutate.register
def _(event: CreditReserved, account: Account) -> Account:
    held = Reservation(amount=event.amount, replicas=event.replicas)
    return touched(account, event, reservations={**account.reservations, event.deployment_id: held})


@_mutate.register
def _(event: CreditReleased, account: Account) -> Account:
    reservations = {k: v for k, v in account.reservations.items() if k != event.deployment_id}
    return touched(account, event, reservations=reservations)


@_mutate.register
def _(event: MemberAdded, account: Account) -> Account:
    return touched(account, event, members={**account.members, event.member_id: event.permissions})


@_mutate.register
def _(event: MemberRemoved, account: Account) -> Account:
    members = {k: v for k, v in account.members.items() if k != event.member_id}
    return touched(account, event, members=members)


@_mutate.register
def _(event: LowBalancePolicySet, account: Account) -> Account:
    return touched(account, event, low_balance=event.policy)


project_account = projector(_mutate)


def open_account(*, name: str, plan: str, at: datetime) -> AccountOpened:
    """A new account with a zero balance."""
    if not name.strip():
        raise InvalidRequest("An account needs a name.")
    try:
        parsed = Plan(plan)
    except ValueError:
        raise InvalidRequest(f"Unknown plan {plan!r}; one of {', '.join(Plan)}.") from None
    return AccountOpened(originator_id=uuid4(), originator_version=1, timestamp=at, name=name, plan=parsed)


def add_credits(account: Account, amount: int, at: datetime) -> CreditsAdded:
    """Credit ``amount`` micro-dollars (a positive integer)."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidAmount(f"Credits must be a positive whole number of micro-dollars, got {amount!r}.")
    if amount > MAX_CREDIT_MICROS:
        raise InvalidAmount(f"One top-up adds at most {MAX_CREDIT_MICROS} micro-dollars, got {amount}.")
    return CreditsAdded(
        originator_id=account.id, originator_version=account.version + 1, timestamp=at, amount=amount
    )


def charge_minute(
    account: Account,
    *,
    deployment_id: UUID,
    minute: datetime,
    amount: int,
    metered_version: int,
    at: datetime,
) -> list[DomainEvent]:
    """Charge one metered minute; the first charge that takes the balance to zero says so."""
    last = account.charged_through.get(deployment_id)
    if last is not None and minute <= last:
        raise DuplicateMinute(f"Minute {minute.isoformat()} of {deployment_id} is already charged.")
    if amount < 0:
        raise InvalidAmount(f"A charge cannot be negative, got {amount}.")
    charged = CreditsCharged(
        originator_id=account.id,
        originator_version=account.version + 1,
        timestamp=at,
        deployment_id=deployment_id,
        minute=minute,
        amount=amount,
        metered_version=metered_version,
    )
    events: list[DomainEvent] = [charged]
    # Once the balance no longer covers the holds (the next minute of what runs), stop: what
    # runs until the stop is charged in that next minute, at most one tick below zero.
    left = account.balance - amount
    if (left <= 0 or left < account.reserved) and not account.exhausted:
        events.append(
            CreditsExhausted(
                originator_id=account.id,
                originator_version=account.version + 2,
                timestamp=at,
                balance=account.balance - amount,
            )
        )
    return events


def add_member(account: Account, member_id: UUID, permissions: object, at: datetime) -> MemberAdded:
    """Make another account a member of this organisation with some of ``PERMISSIONS``."""
    if member_id == account.id:
        raise InvalidRequest("An account is not a member of itself.")
    if member_id in account.members:
        raise InvalidRequest("That account is already a member; remove it first to change its permissions.")
    if isinstance(permissions, str) or not isinstance(permissions, list | tuple) or not permissions:
        raise InvalidRequest(f"permissions must be a non-empty list of: {', '.join(PERMISSIONS)}.")
    unknown = [p for p in permissions if p not in PERMISSIONS]
    if unknown:
        raise InvalidRequest(f"Unknown permissions {unknown!r}; one of {', '.join(PERMISSIONS)}.")
    return MemberAdded(
        originator_id=account.id,
        originator_version=account.version + 1,
        timestamp=at,
        member_id=member_id,
        permissions=tuple(p for p in PERMISSIONS if p in permissions),
    )


def remove_member(account: Account, member_id: UUID, at: datetime) -> MemberRemoved:
    """End a membership."""
    if member_id not in account.members:
        raise InvalidRequest("That account is not a member of this organisation.")
    return MemberRemoved(
        originator_id=account.id, originator_version=account.version + 1, timestamp=at, member_id=member_id
    )
