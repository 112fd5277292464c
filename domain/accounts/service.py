"""The accounts service: open accounts, add credits, manage organisation members."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from modelyard.domain.accounts import aggregate as accounts
from modelyard.domain.shared.errors import AccountNotFound
from modelyard.domain.shared.store import Created, Store


class OpenAccount(msgspec.Struct, frozen=True, kw_only=True):
    """Open an account with a zero balance."""

    name: str
    plan: str = "free"
    at: datetime


class AddCredits(msgspec.Struct, frozen=True, kw_only=True):
    """Credit an account ``amount`` micro-dollars."""

    account_id: UUID
    amount: int
    at: datetime


class OpenOrganisation(msgspec.Struct, frozen=True, kw_only=True):
    """Open an organisation (an account of its own, on its creator's plan) whose first
    member is its creator, holding every permission."""

    name: str
    creator_id: UUID
    at: datetime


class AddMember(msgspec.Struct, frozen=True, kw_only=True):
    """Make ``member_id`` a member of the organisation ``account_id`` with ``permissions``."""

    account_id: UUID
    member_id: UUID
    permissions: tuple[str, ...]
    at: datetime


class RemoveMember(msgspec.Struct, frozen=True, kw_only=True):
    """End a membership."""

    account_id: UUID
    member_id: UUID
    at: datetime


class AccountsService:
    """Load, command, save: every write to accounts goes through here."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, account_id: UUID) -> accounts.Account:
        """The account, or ACCOUNT_NOT_FOUND."""
        return self._store.load(account_id, accounts.project_account, accounts.Account, AccountNotFound)

    def open_account(self, command: OpenAccount) -> Created:
        """Open an account; returns its id."""
        event = accounts.open_account(name=command.name, plan=command.plan, at=command.at)
        return Created(id=event.originator_id, position=self._store.record(event))

    def open_organisation(self, command: OpenOrganisation) -> Created:
        """Open the organisation and make its creator a member, in one transaction."""
        creator = self.get(command.creator_id)
        opened = accounts.open_account(name=command.name, plan=creator.plan, at=command.at)
        organisation = accounts.project_account(None, [opened])
        assert organisation is not None
        joined = accounts.add_member(organisation, creator.id, accounts.PERMISSIONS, command.at)
        return Created(id=opened.originator_id, position=self._store.record(opened, joined))

    def add_credits(self, command: AddCredits) -> int:
        """Credit the account; returns the position of the top-up."""
        return self._store.record(
            accounts.add_credits(self.get(command.account_id), command.amount, command.at)
        )

    def add_member(self, command: AddMember) -> int:
        """Add a member (an existing account) to an organisation."""
        organisation = self.get(command.account_id)
        self.get(command.member_id)
        return self._store.record(
            accounts.add_member(organisation, command.member_id, command.permissions, command.at)
        )

    def remove_member(self, command: RemoveMember) -> int:
        """Remove a member from an organisation."""
        organisation = self.get(command.account_id)
        return self._store.record(accounts.remove_member(organisation, command.member_id, command.at))
