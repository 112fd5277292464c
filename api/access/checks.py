"""The model of permissions applied to what the views hold: one place every route asks.

Each check loads the facts it needs (a deployment's owner, an organisation's members),
asks ``domain.access.model`` and turns its verdict into the answer: ``NOT_FOUND`` is the
resource's own not-found code (so another account's deployment, key or organisation is
answered exactly as one that does not exist), ``FORBIDDEN`` is 403, ``WRONG_KEY`` is
INVALID_API_KEY (401).
"""

from __future__ import annotations

from uuid import UUID

from modelyard.adapters.views.db import ViewDatabase
from modelyard.api.auth import Principal
from modelyard.api.errors import Forbidden, InvalidApiKey
from modelyard.domain.access import model as access
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import DomainError, InstanceNotFound, OrgNotFound
from modelyard.projections.access import queries

#: Deployment states that still exist for the API (a destroyed one is gone).
GONE = ("destroyed",)


def enforce(verdict: access.Verdict, not_found: DomainError, forbidden: str) -> None:
    """Raise what ``verdict`` answers, or nothing if it allows."""
    if verdict is access.Verdict.ALLOWED:
        return
    if verdict is access.Verdict.WRONG_KEY:
        raise InvalidApiKey("This kind of key does not reach this route.")
    if verdict is access.Verdict.FORBIDDEN:
        raise Forbidden(forbidden)
    raise not_found


class Checks:
    """Loads the facts of one question from the views and enforces the model's verdict."""

    def __init__(self, views: ViewDatabase) -> None:
        self._views = views

    def owner(self, deployment_id: UUID) -> UUID | None:
        """The account owning a deployment that exists (not destroyed), else None."""
        with self._views.read() as tx:
            found = queries.deployment_owner(tx, deployment_id)
        if found is None or found.state in GONE:
            return None
        return ids.parse_id(found.account_id, ids.ACCOUNT)

    def org(self, org_id: str) -> access.Org | None:
        """The organisation's members, or None if ``org_id`` names none (malformed included)."""
        try:
            org_uuid = ids.parse_id(org_id, ids.ACCOUNT)
        except DomainError:
            return None
        with self._views.read() as tx:
            members = queries.members_of(tx, ids.public_id(ids.ACCOUNT, org_uuid))
        if not members:
            return None
        return access.Org(
            id=org_uuid,
            members={ids.parse_id(m.account_id, ids.ACCOUNT): frozenset(m.permissions) for m in members},
        )

    def manage_deployment(self, principal: Principal, shown: str) -> UUID:
        """The deployment ``shown`` names if the caller's account owns it and it exists."""
        deployment = ids.parse_deployment_id(shown)
        verdict = access.manage(principal.caller(), self.owner(deployment))
        enforce(verdict, InstanceNotFound(f"No deployment {shown} on this account."), "")
        return deployment

    def in_org(self, principal: Principal, org_id: str, permission: str) -> access.Org:
        """The organisation if the caller is a member holding ``permission``."""
        org = self.org(org_id)
        verdict = access.in_org(principal.caller(), org, permission)
        enforce(
            verdict,
            OrgNotFound(f"No organisation {org_id} that this account belongs to."),
            f"This account is a member of {org_id} without {permission}.",
        )
        assert org is not None
        return org

    def in_org_deployment(self, principal: Principal, org_id: str, shown: str, permission: str) -> UUID:
        """The org's deployment ``shown`` names, if the caller is a member holding ``permission``."""
        org = self.org(org_id)
        deployment = ids.parse_deployment_id(shown)
        verdict = access.in_org_deployment(principal.caller(), org, permission, self.owner(deployment))
        if verdict is access.Verdict.NOT_FOUND and (
            org is None or principal.caller().account_id not in org.members
        ):
            raise OrgNotFound(f"No organisation {org_id} that this account belongs to.")
        enforce(
            verdict,
            InstanceNotFound(f"No deployment {shown} in organisation {org_id}."),
            f"This account is a member of {org_id} without {permission}.",
        )
        return deployment
