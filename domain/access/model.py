"""The model of permissions: pure facts in, a verdict out.

A caller is one key: its account, its kind and, for an instance key, its deployment, for
a scoped key, its grants. A deployment is known by its owner (an account, which may be an
organisation); an organisation by its members and their permissions. Every route asks one
of the questions below and maps the verdict to an answer:

- ``ALLOWED``;
- ``NOT_FOUND``: the caller may not learn that the thing exists (another account's
  deployment, key or organisation), so it is answered exactly as if it did not;
- ``FORBIDDEN``: the caller may know it exists (its own account's) and may not use it;
- ``WRONG_KEY``: this kind of key never does this (a management key does not infer, an
  inference key does not manage).

Nothing here reads a clock, a database or a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from uuid import UUID

import msgspec

from modelyard.domain.keys.aggregate import KeyKind, Role

INVOKE = "deployment:invoke"
MANAGE = "deployment:manage"
ADMIN = "org:admin"


class Verdict(StrEnum):
    """The answer to one question of access."""

    ALLOWED = "allowed"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    WRONG_KEY = "wrong_key"


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    """One live key: revoked keys never get this far (they authenticate nothing)."""

    key_id: str
    account_id: UUID
    kind: KeyKind
    # An instance key's own deployment.
    deployment_id: UUID | None = None
    # A scoped key's grants: deployment -> role.
    grants: Mapping[UUID, Role] = {}


class Org(msgspec.Struct, frozen=True, kw_only=True):
    """An organisation's members and what each may do there."""

    id: UUID
    members: Mapping[UUID, frozenset[str]]


def infer(caller: Caller, deployment_id: UUID) -> Verdict:
    """May ``caller`` send inference to ``deployment_id``?

    Answered without knowing whether the deployment exists or whose it is, so the answer
    itself reveals neither: an instance key reaches its own deployment, a scoped key the
    deployments it was granted (grants are only ever on its own account's deployments).
    """
    if caller.kind is KeyKind.INSTANCE:
        return Verdict.ALLOWED if caller.deployment_id == deployment_id else Verdict.NOT_FOUND
    if caller.kind is KeyKind.SCOPED:
        return Verdict.ALLOWED if caller.grants.get(deployment_id) is Role.INFERENCE else Verdict.FORBIDDEN
    return Verdict.WRONG_KEY


def manage(caller: Caller, owner: UUID | None) -> Verdict:
    """May ``caller`` manage a deployment (or a key) owned by ``owner`` (None: there is none)?"""
    if caller.kind is not KeyKind.MANAGEMENT:
        return Verdict.WRONG_KEY
    return Verdict.ALLOWED if owner is not None and owner == caller.account_id else Verdict.NOT_FOUND


def in_org(caller: Caller, org: Org | None, permission: str) -> Verdict:
    """May ``caller`` act in ``org`` (None: there is no such organisation) with ``permission``?

    The caller is its account: a member's management key. Who is not a member learns
    nothing of the organisation; a member without the permission is forbidden.
    """
    if caller.kind is not KeyKind.MANAGEMENT:
        return Verdict.WRONG_KEY
    if org is None or caller.account_id not in org.members:
        return Verdict.NOT_FOUND
    return Verdict.ALLOWED if permission in org.members[caller.account_id] else Verdict.FORBIDDEN


def in_org_deployment(caller: Caller, org: Org | None, permission: str, owner: UUID | None) -> Verdict:
    """``in_org`` on a deployment owned by ``owner`` (None: there is none).

    A member learns nothing of deployments the organisation does not own: not found,
    before the permission is even asked.
    """
    verdict = in_org(caller, org, permission)
    if verdict is Verdict.NOT_FOUND or verdict is Verdict.WRONG_KEY:
        return verdict
    if org is None or owner != org.id:
        return Verdict.NOT_FOUND
    return verdict
