"""The API key aggregate. The secret never enters an event: only its SHA-256 does."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from functools import singledispatch
from uuid import UUID, uuid4

from modelyard.domain.deployments.aggregate import Deployment
from modelyard.domain.shared.errors import InstanceNotFound, InvalidRequest
from modelyard.domain.shared.events import Aggregate, DomainEvent, NotThisAggregate, projector, touched


class KeyKind(StrEnum):
    """What a key may do (DESIGN §4.6)."""

    MANAGEMENT = "management"
    INSTANCE = "instance"
    SCOPED = "scoped"
    # Tops up any account's credits (the operator's own key, issued from the server's CLI).
    OPERATOR = "operator"


class Role(StrEnum):
    """What a grant lets a scoped key do on one deployment."""

    INFERENCE = "inference"


class KeyIssued(DomainEvent, frozen=True, kw_only=True):
    """A key was issued; only its hash and a display form are recorded, never the secret."""

    account_id: UUID
    kind: KeyKind
    secret_hash: str
    display: str
    deployment_id: UUID | None = None


class KeyNamed(DomainEvent, frozen=True, kw_only=True):
    """The owner gave the key a name (a label to tell keys apart; recorded with its issue)."""

    name: str


class KeyRevoked(DomainEvent, frozen=True, kw_only=True):
    """The key no longer authenticates anything."""


class AccessGranted(DomainEvent, frozen=True, kw_only=True):
    """A scoped key may now reach one deployment in ``role``."""

    deployment_id: UUID
    role: Role


class AccessRevoked(DomainEvent, frozen=True, kw_only=True):
    """A scoped key's grant on one deployment was withdrawn."""

    deployment_id: UUID


class ApiKey(Aggregate, frozen=True, kw_only=True):
    """A key's owner, kind, hash and grants."""

    account_id: UUID
    kind: KeyKind
    secret_hash: str
    display: str
    deployment_id: UUID | None = None
    name: str = ""
    revoked: bool = False
    grants: dict[UUID, Role] = {}


def hash_secret(secret: str) -> str:
    """The hex SHA-256 a key is stored and looked up by."""
    return hashlib.sha256(secret.encode()).hexdigest()


# A key's name is a label for its owner, not a document.
MAX_NAME = 200
# The documents' secret prefixes: a management key, then a per-instance inference key.
SECRET_PREFIXES = ("auxen_live_", "auxk_", "auxs_", "auxop_")
# How much of the random part may be shown again: enough to tell keys apart, not to guess one.
_SHOWN = 4


def display_of(secret: str) -> str:
    """What may be shown of a secret after it was shown once: its prefix and four characters."""
    for prefix in SECRET_PREFIXES:
        if secret.startswith(prefix):
            return secret[: len(prefix) + _SHOWN] + "…"
    return "…"


@singledispatch
def _mutate(event: DomainEvent, key: ApiKey | None) -> ApiKey | None:
    raise NotThisAggregate(f"{type(event).__name__} is not a key event")


@_mutate.register
def _(event: KeyIssued, _: None) -> ApiKey:
    return ApiKey(
        id=event.originator_id,
        version=event.originator_version,
        created_on=event.timestamp,
        modified_on=event.timestamp,
        account_id=event.account_id,
        kind=event.kind,
        secret_hash=event.secret_hash,
        display=event.display,
        deployment_id=event.deployment_id,
    )


@_mutate.register
def _(event: KeyNamed, key: ApiKey) -> ApiKey:
    return touched(key, event, name=event.name)


@_mutate.register
def _(event: KeyRevoked, key: ApiKey) -> ApiKey:
    return touched(key, event, revoked=True)


@_mutate.register
def _(event: AccessGranted, key: ApiKey) -> ApiKey:
    return touched(key, event, grants={**key.grants, event.deployment_id: event.role})


@_mutate.register
def _(event: AccessRevoked, key: ApiKey) -> ApiKey:
    return touched(key, event, grants={k: v for k, v in key.grants.items() if k != event.deployment_id})


project_key = projector(_mutate)


def issue_key(
    *,
    account_id: UUID,
    kind: KeyKind,
    secret_hash: str,
    display: str,
    at: datetime,
    deployment_id: UUID | None = None,
) -> KeyIssued:
    """A new key; an instance key belongs to exactly one deployment."""
    if (kind is KeyKind.INSTANCE) != (deployment_id is not None):
        raise InvalidRequest("An instance key names its deployment, and only an instance key does.")
    return KeyIssued(
        originator_id=uuid4(),
        originator_version=1,
        timestamp=at,
        account_id=account_id,
        kind=kind,
        secret_hash=secret_hash,
        display=display,
        deployment_id=deployment_id,
    )


def name_key(key: ApiKey, name: str, at: datetime) -> KeyNamed:
    """Label a key (at most ``MAX_NAME`` characters)."""
    if len(name) > MAX_NAME:
        raise InvalidRequest(f"A key's name has at most {MAX_NAME} characters.")
    return KeyNamed(originator_id=key.id, originator_version=key.version + 1, timestamp=at, name=name)


def revoke_key(key: ApiKey, at: datetime) -> KeyRevoked:
    """Revoke; revoking twice is refused so the history says exactly when it happened."""
    if key.revoked:
        raise InvalidRequest("This key is already revoked.")
    return KeyRevoked(originator_id=key.id, originator_version=key.version + 1, timestamp=at)


def grant_access(key: ApiKey, deployment: Deployment, role: str, at: datetime) -> AccessGranted:
    """Let a scoped key reach one deployment of its own account."""
    if key.kind is not KeyKind.SCOPED:
        raise InvalidRequest("Access is granted to scoped keys only.")
    # Another account's deployment is answered as if it did not exist: a key's owner
    # learns nothing about other accounts, and can never grant itself their deployments.
    if deployment.account_id != key.account_id:
        raise InstanceNotFound(f"No deployment {deployment.id}.")
    try:
        parsed = Role(role)
    except ValueError:
        raise InvalidRequest(f"Unknown role {role!r}; the role is 'inference'.") from None
    return AccessGranted(
        originator_id=key.id,
        originator_version=key.version + 1,
        timestamp=at,
        deployment_id=deployment.id,
        role=parsed,
    )


def revoke_access(key: ApiKey, deployment_id: UUID, at: datetime) -> AccessRevoked:
    """Withdraw a grant."""
    if deployment_id not in key.grants:
        raise InvalidRequest("This key has no access to that deployment.")
    return AccessRevoked(
        originator_id=key.id, originator_version=key.version + 1, timestamp=at, deployment_id=deployment_id
    )
