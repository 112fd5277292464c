"""The keys service: issue and revoke keys, grant and withdraw a scoped key's access."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from modelyard.domain.accounts import aggregate as accounts
from modelyard.domain.deployments import aggregate as deployments
from modelyard.domain.keys import aggregate as keys
from modelyard.domain.shared.errors import AccountNotFound, InstanceNotFound, KeyNotFound
from modelyard.domain.shared.events import DomainEvent
from modelyard.domain.shared.store import Created, Store


class IssueKey(msgspec.Struct, frozen=True, kw_only=True):
    """Record a key by its hash; the caller shows the secret once."""

    account_id: UUID
    kind: keys.KeyKind
    secret_hash: str
    display: str
    deployment_id: UUID | None = None
    name: str = ""
    at: datetime


class IssueScopedKey(msgspec.Struct, frozen=True, kw_only=True):
    """Issue a scoped key already granted ``role`` on each of ``deployment_ids`` (one transaction)."""

    account_id: UUID
    secret_hash: str
    display: str
    deployment_ids: tuple[UUID, ...]
    role: str = "inference"
    name: str = ""
    at: datetime


class RevokeKey(msgspec.Struct, frozen=True, kw_only=True):
    """Revoke a key: every API process refuses it within seconds."""

    key_id: UUID
    at: datetime


class GrantAccess(msgspec.Struct, frozen=True, kw_only=True):
    """Let a scoped key reach one deployment in ``role``."""

    key_id: UUID
    deployment_id: UUID
    role: str
    at: datetime


class RevokeAccess(msgspec.Struct, frozen=True, kw_only=True):
    """Withdraw a scoped key's grant."""

    key_id: UUID
    deployment_id: UUID
    at: datetime


def _named(issued: keys.KeyIssued, name: str) -> list[DomainEvent]:
    """The issue, and its name if it has one."""
    if not name:
        return [issued]
    key = keys.project_key(None, [issued])
    assert key is not None
    return [issued, keys.name_key(key, name, issued.timestamp)]


class KeysService:
    """Load, command, save: every write to keys goes through here."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, key_id: UUID) -> keys.ApiKey:
        """The key, or KEY_NOT_FOUND."""
        return self._store.load(key_id, keys.project_key, keys.ApiKey, KeyNotFound)

    def issue(self, command: IssueKey) -> Created:
        """Issue a key of an existing account; returns its id."""
        self._store.load(command.account_id, accounts.project_account, accounts.Account, AccountNotFound)
        event = keys.issue_key(
            account_id=command.account_id,
            kind=command.kind,
            secret_hash=command.secret_hash,
            display=command.display,
            at=command.at,
            deployment_id=command.deployment_id,
        )
        return Created(id=event.originator_id, position=self._store.record(*_named(event, command.name)))

    def issue_scoped(self, command: IssueScopedKey) -> Created:
        """Issue a scoped key and its grants together: it never exists with only some of them."""
        self._store.load(command.account_id, accounts.project_account, accounts.Account, AccountNotFound)
        issued = keys.issue_key(
            account_id=command.account_id,
            kind=keys.KeyKind.SCOPED,
            secret_hash=command.secret_hash,
            display=command.display,
            at=command.at,
        )
        events = _named(issued, command.name)
        key = keys.project_key(None, events)
        for deployment_id in dict.fromkeys(command.deployment_ids):
            deployment = self._store.load(
                deployment_id, deployments.project_deployment, deployments.Deployment, InstanceNotFound
            )
            assert key is not None
            granted = keys.grant_access(key, deployment, command.role, command.at)
            events.append(granted)
            key = keys.project_key(key, [granted])
        return Created(id=issued.originator_id, position=self._store.record(*events))

    def revoke(self, command: RevokeKey) -> int:
        """Revoke a key."""
        return self._store.record(keys.revoke_key(self.get(command.key_id), command.at))

    def grant_access(self, command: GrantAccess) -> int:
        """Grant a scoped key access to an existing deployment of its own account."""
        deployment = self._store.load(
            command.deployment_id, deployments.project_deployment, deployments.Deployment, InstanceNotFound
        )
        key = self.get(command.key_id)
        return self._store.record(keys.grant_access(key, deployment, command.role, command.at))

    def revoke_access(self, command: RevokeAccess) -> int:
        """Withdraw a grant."""
        key = self.get(command.key_id)
        return self._store.record(keys.revoke_access(key, command.deployment_id, command.at))
