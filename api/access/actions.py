"""The access use cases: the catalog by plan, keys, grants, organisations, credits, usage.

Each takes the authenticated principal, asks ``Checks`` (the model of permissions) before
it reads or changes anything of a deployment, a key or an organisation, calls one
application service, waits until the views show the effect, and answers a typed Struct.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

import msgspec

from modelyard.adapters.keygen import INSTANCE_PREFIX, MANAGEMENT_PREFIX, SCOPED_PREFIX, new_secret
from modelyard.adapters.state import key_use
from modelyard.adapters.views.db import ViewDatabase
from modelyard.adapters.views.follow import ViewsFollower
from modelyard.api import idempotency
from modelyard.api.access import schemas as s
from modelyard.api.access.checks import Checks
from modelyard.api.auth import Principal
from modelyard.api.errors import InvalidBody
from modelyard.api.instances.presenters import price_per_hour
from modelyard.domain.access.model import ADMIN, MANAGE
from modelyard.domain.accounts.aggregate import PERMISSIONS
from modelyard.domain.accounts.service import AddCredits, AddMember, OpenOrganisation, RemoveMember
from modelyard.domain.billing.pricing import check_capacity
from modelyard.domain.catalog.hardware import GPU_TYPES, Preset, check_gpu_fit
from modelyard.domain.catalog.models import CATALOG, Kind, ModelSpec, Plan, available_to, find_model
from modelyard.domain.deployments.service import Provision, RequestDeployment
from modelyard.domain.keys.aggregate import KeyKind, Role
from modelyard.domain.keys.service import GrantAccess, IssueKey, IssueScopedKey, RevokeAccess, RevokeKey
from modelyard.domain.services import Services
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import (
    AccountNotFound,
    DomainError,
    InstanceNotFound,
    InvalidRequest,
    KeyNotFound,
)
from modelyard.domain.shared.money import format_usd, parse_usd
from modelyard.projections.access import queries
from modelyard.projections.balances.queries import balance_of, ledger_of_account
from modelyard.projections.deployments.queries import instance_for_account

#: Model id -> (the engine that serves it here, or None and why not).
ServedBy = Callable[[str], tuple[str | None, str | None]]


def _now() -> datetime:
    return datetime.now(UTC)


def _plan(text: str) -> Plan:
    try:
        return Plan(text)
    except ValueError:
        return Plan.FREE


def _fits(model: ModelSpec) -> list[str]:
    fits = []
    for gpu in GPU_TYPES:
        try:
            check_gpu_fit(model, gpu, Preset.BALANCED)
        except DomainError:
            continue
        fits.append(gpu)
    return fits


def csv_of(rows: list[s.UsageRow]) -> str:
    """The usage export as CSV, a header line first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    fields = list(s.UsageRow.__struct_fields__)
    writer.writerow(fields)
    for row in rows:
        writer.writerow([getattr(row, f) for f in fields])
    return out.getvalue()


class Access:
    """Keys, grants, organisations, the catalog by plan, credits and usage export."""

    def __init__(
        self,
        services: Services,
        views: ViewDatabase,
        state: ViewDatabase,
        follower: ViewsFollower,
        served_by: ServedBy,
    ) -> None:
        self._services, self._views, self._state = services, views, state
        self._follower, self._served_by = follower, served_by
        self.checks = Checks(views)

    # --- the catalog ----------------------------------------------------------------------

    def _entry(self, model: ModelSpec) -> s.CatalogEntry:
        size = model.size.value
        engine, reason = self._served_by(model.id)
        return s.CatalogEntry(
            id=model.id,
            name=model.name,
            capabilities=["embeddings"] if model.kind is Kind.EMBEDDING else ["chat", "completions"],
            size=size,
            tier=model.plan.value,
            context_window=model.context_window,
            parameters_b=model.parameters_b,
            dimensions=model.dimensions,
            pricing=s.Pricing(
                dedicated_per_hour_usd=format_usd(price_per_hour("dedicated", size, 1)),
                shared_per_hour_usd=format_usd(price_per_hour("shared", size, 1))
                if size == "small"
                else None,
            ),
            hardware=s.Hardware(
                engine=engine, servable_here=engine is not None, reason=reason, gpu_types=_fits(model)
            ),
        )

    def catalog(self) -> s.Catalog:
        """Every active model."""
        return s.Catalog(data=[self._entry(m) for m in CATALOG if m.active])

    def available(self, principal: Principal) -> s.Catalog:
        """The models the caller's plan reaches."""
        plan = _plan(principal.plan)
        return s.Catalog(data=[self._entry(m) for m in available_to(plan)], plan=plan.value)

    def model(self, model_id: str) -> s.CatalogEntry:
        """One model; unknown -> MODEL_NOT_FOUND."""
        return self._entry(find_model(model_id))

    # --- keys -------------------------------------------------------------------------------

    def _key_info(self, row: queries.KeyRow, used: dict[str, str], secret: str | None = None) -> s.KeyInfo:
        return s.KeyInfo(
            id=row.key_id,
            kind=row.kind,
            name=row.name,
            display=row.display,
            revoked=row.revoked,
            created_at=row.created_at,
            last_used_at=used.get(row.key_id),
            deployment_id=ids.deployment_ref(UUID(hex=row.deployment_uuid)) if row.deployment_uuid else None,
            permissions=[
                s.Permission(
                    deployment_id=ids.deployment_ref(UUID(hex=dep)), api_key_id=row.key_id, role=role
                )
                for dep, role in sorted(row.grants.items())
            ],
            key=secret,
        )

    def list_keys(self, principal: Principal) -> s.KeyList:
        """Every key of the caller's account, with its grants and when it was last used."""
        with self._views.read() as tx:
            rows = queries.keys_of_account(tx, principal.account_id)
        with self._state.read() as tx:
            used = key_use.last_used(tx, [r.key_id for r in rows])
        return s.KeyList(data=[self._key_info(r, used) for r in rows])

    def show_key(self, principal: Principal, key_id: str) -> s.KeyInfo:
        """One key of the caller's account; another account's is not found."""
        row = self._own_key(principal, key_id)
        with self._state.read() as tx:
            used = key_use.last_used(tx, [row.key_id])
        return self._key_info(row, used)

    def _own_key(self, principal: Principal, key_id: str) -> queries.KeyRow:
        ids.parse_id(key_id, ids.KEY)
        with self._views.read() as tx:
            row = queries.key_of_account(tx, principal.account_id, key_id)
        if row is None:
            raise KeyNotFound(f"No key {key_id} on this account.")
        return row

    def create_key(self, principal: Principal, request: s.CreateKey, key: str | None) -> idempotency.Outcome:
        """Issue a management or scoped key; its secret is in this answer only (a replay omits it)."""
        if request.kind not in (KeyKind.MANAGEMENT, KeyKind.SCOPED):
            raise InvalidRequest(f"Unknown kind {request.kind!r}; one of management, scoped.")
        if request.kind == KeyKind.MANAGEMENT and request.deployments:
            raise InvalidRequest(
                "A management key reaches the whole account; only a scoped key lists deployments."
            )
        if request.role not in tuple(Role):
            raise InvalidRequest(f"Unknown role {request.role!r}; the role is 'inference'.")
        deployments = tuple(self.checks.manage_deployment(principal, d) for d in request.deployments)

        def run(_: UUID) -> s.KeyInfo:
            return self._issue(principal, request, deployments)

        fingerprint = idempotency.fingerprint("create_key", request)
        return idempotency.run_once(
            self._state,
            account_id=principal.account_id,
            key=key,
            request=fingerprint,
            status=201,
            command=run,
            stored=lambda info: msgspec.structs.replace(info, key=None),
        )

    def _issue(self, principal: Principal, request: s.CreateKey, deployments: tuple[UUID, ...]) -> s.KeyInfo:
        account = ids.parse_id(principal.account_id, ids.ACCOUNT)
        now = _now()
        if request.kind == KeyKind.MANAGEMENT:
            secret, digest, display = new_secret(MANAGEMENT_PREFIX)
            command = IssueKey(
                account_id=account,
                kind=KeyKind.MANAGEMENT,
                secret_hash=digest,
                display=display,
                name=request.name,
                at=now,
            )
            made = self._services.keys.issue(command)
        else:
            secret, digest, display = new_secret(SCOPED_PREFIX)
            scoped = IssueScopedKey(
                account_id=account,
                secret_hash=digest,
                display=display,
                deployment_ids=deployments,
                role=request.role,
                name=request.name,
                at=now,
            )
            made = self._services.keys.issue_scoped(scoped)
        self._follower.settle(made.id, made.position)
        row = self._own_key(principal, ids.public_id(ids.KEY, made.id))
        return self._key_info(row, {}, secret)

    def revoke_key(self, principal: Principal, key_id: str) -> s.KeyInfo:
        """Revoke a key of the caller's account: every API process refuses it within seconds."""
        row = self._own_key(principal, key_id)
        if row.key_id == principal.key_id:
            raise InvalidRequest("A key cannot revoke itself; revoke it with another management key.")
        if row.revoked:
            raise InvalidRequest(f"{key_id} is already revoked.")
        key = ids.parse_id(key_id, ids.KEY)
        position = self._services.keys.revoke(RevokeKey(key_id=key, at=_now()))
        self._follower.settle(key, position)
        return self.show_key(principal, key_id)

    # --- grants -----------------------------------------------------------------------------

    def permissions(self, principal: Principal, deployment_id: str) -> s.PermissionList:
        """The grants on one deployment of the caller's account."""
        deployment = self.checks.manage_deployment(principal, deployment_id)
        with self._views.read() as tx:
            rows = queries.keys_of_account(tx, principal.account_id)
        shown = ids.deployment_ref(deployment)
        return s.PermissionList(
            data=[
                s.Permission(deployment_id=shown, api_key_id=r.key_id, role=r.grants[deployment.hex])
                for r in rows
                if deployment.hex in r.grants and not r.revoked
            ]
        )

    def grant(self, principal: Principal, deployment_id: str, request: s.Grant) -> s.Permission:
        """Let one of the account's scoped keys reach one of its deployments."""
        deployment = self.checks.manage_deployment(principal, deployment_id)
        row = self._own_key(principal, request.api_key_id)
        if request.role not in tuple(Role):
            raise InvalidRequest(f"Unknown role {request.role!r}; the role is 'inference'.")
        if row.kind != KeyKind.SCOPED:
            raise InvalidRequest(f"{row.key_id} is a {row.kind} key; access is granted to scoped keys only.")
        if row.revoked:
            raise InvalidRequest(f"{row.key_id} is revoked.")
        key = ids.parse_id(row.key_id, ids.KEY)
        command = GrantAccess(key_id=key, deployment_id=deployment, role=request.role, at=_now())
        self._follower.settle(key, self._services.keys.grant_access(command))
        return s.Permission(
            deployment_id=ids.deployment_ref(deployment), api_key_id=row.key_id, role=request.role
        )

    def revoke_grant(self, principal: Principal, deployment_id: str, key_id: str) -> s.Permission:
        """Withdraw a grant: the key stops reaching the deployment within seconds."""
        deployment = self.checks.manage_deployment(principal, deployment_id)
        row = self._own_key(principal, key_id)
        if deployment.hex not in row.grants:
            raise KeyNotFound(f"{key_id} has no access to {deployment_id}.")
        key = ids.parse_id(row.key_id, ids.KEY)
        position = self._services.keys.revoke_access(
            RevokeAccess(key_id=key, deployment_id=deployment, at=_now())
        )
        self._follower.settle(key, position)
        return s.Permission(
            deployment_id=ids.deployment_ref(deployment),
            api_key_id=row.key_id,
            role=row.grants[deployment.hex],
        )

    # --- organisations ------------------------------------------------------------------------

    def _org_info(self, org_id: str) -> s.OrgInfo:
        with self._views.read() as tx:
            row = queries.org_row(tx, org_id)
            members = queries.members_of(tx, org_id)
            balance = balance_of(tx, org_id)
        if row is None:
            raise InvalidRequest(f"{org_id} is not in the views yet; retry in a moment.")
        return s.OrgInfo(
            id=org_id,
            name=row.name,
            plan=row.plan,
            members=[
                s.MemberInfo(account_id=m.account_id, name=m.name, permissions=list(m.permissions))
                for m in members
            ],
            balance_usd=format_usd(balance.balance if balance else 0),
            available_usd=format_usd(balance.available if balance else 0),
        )

    def create_org(self, principal: Principal, request: s.CreateOrg) -> s.OrgInfo:
        """Open an organisation; the caller's account is its first member, with every permission."""
        creator = ids.parse_id(principal.account_id, ids.ACCOUNT)
        made = self._services.accounts.open_organisation(
            OpenOrganisation(name=request.name, creator_id=creator, at=_now())
        )
        self._follower.settle(made.id, made.position)
        return self._org_info(ids.public_id(ids.ACCOUNT, made.id))

    def list_orgs(self, principal: Principal) -> s.OrgList:
        """The organisations the caller's account belongs to."""
        with self._views.read() as tx:
            orgs = queries.orgs_of_member(tx, principal.account_id)
        return s.OrgList(data=[self._org_info(o.org_id) for o in orgs])

    def show_org(self, principal: Principal, org_id: str) -> s.OrgInfo:
        """An organisation the caller belongs to."""
        self._member(principal, org_id)
        return self._org_info(org_id)

    def _member(self, principal: Principal, org_id: str) -> None:
        """Membership alone (any permission): what reading an organisation needs."""
        org = self.checks.org(org_id)
        if org is None or ids.parse_id(principal.account_id, ids.ACCOUNT) not in org.members:
            self.checks.in_org(principal, org_id, ADMIN)  # raises the not-found answer

    def add_member(self, principal: Principal, org_id: str, request: s.AddMember) -> s.OrgInfo:
        """Add an existing account with permissions (the caller needs ``org:admin``)."""
        org = self.checks.in_org(principal, org_id, ADMIN)
        unknown = [p for p in request.permissions if p not in PERMISSIONS]
        if unknown or not request.permissions:
            raise InvalidRequest(f"permissions must be a non-empty list of: {', '.join(PERMISSIONS)}.")
        member = ids.parse_id(request.account_id, ids.ACCOUNT)
        with self._views.read() as tx:
            exists = queries.account_exists(tx, ids.public_id(ids.ACCOUNT, member))
        if not exists:
            raise AccountNotFound(f"No account {request.account_id}.")
        command = AddMember(
            account_id=org.id, member_id=member, permissions=tuple(request.permissions), at=_now()
        )
        self._follower.settle(org.id, self._services.accounts.add_member(command))
        return self._org_info(org_id)

    def remove_member(self, principal: Principal, org_id: str, account_id: str) -> s.OrgInfo:
        """Remove a member: it loses access at once (access reads the views, no cache)."""
        org = self.checks.in_org(principal, org_id, ADMIN)
        member = ids.parse_id(account_id, ids.ACCOUNT)
        if member not in org.members:
            raise AccountNotFound(f"{account_id} is not a member of {org_id}.")
        admins = [m for m, perms in org.members.items() if ADMIN in perms]
        if admins == [member]:
            raise InvalidRequest("That is the organisation's last org:admin; add another first.")
        command = RemoveMember(account_id=org.id, member_id=member, at=_now())
        self._follower.settle(org.id, self._services.accounts.remove_member(command))
        return self._org_info(org_id)

    def provision_in_org(
        self, principal: Principal, org_id: str, request: s.OrgDeployment
    ) -> s.DeploymentInfo:
        """A deployment the organisation owns and pays for (the caller needs ``deployment:manage``)."""
        org = self.checks.in_org(principal, org_id, MANAGE)
        # The deployment's own inference key is recorded by hash and never shown: members
        # call it through the organisation's route with their own keys.
        _, digest, display = new_secret(INSTANCE_PREFIX)
        command = RequestDeployment(
            account_id=org.id,
            model=request.model_id,
            capacity=check_capacity(request.replicas),
            tier=request.tier,
            name=request.name,
            prefix=ids.DEPLOYMENT,
            at=_now(),
        )
        made = self._services.deployments.provision(
            Provision(deployment=command, key_hash=digest, key_display=display)
        )
        self._follower.settle(made.id, made.position)
        return self.org_deployment(principal, org_id, ids.deployment_ref(made.id))

    def org_deployment(self, principal: Principal, org_id: str, deployment_id: str) -> s.DeploymentInfo:
        """One deployment of the organisation (any member may read it)."""
        self._member(principal, org_id)
        org = self.checks.org(org_id)
        assert org is not None
        deployment = ids.parse_deployment_id(deployment_id)
        with self._views.read() as tx:
            row = instance_for_account(tx, org_id, deployment)
        if row is None or row.state == "destroyed":
            raise InstanceNotFound(f"No deployment {deployment_id} in organisation {org_id}.")
        return s.DeploymentInfo(
            id=ids.deployment_ref(row.id),
            name=row.name,
            model_id=row.model,
            status=row.status_v2,
            replicas=row.capacity,
            org_id=org_id,
        )

    # --- credits and usage ------------------------------------------------------------------

    def top_up(self, principal: Principal, request: s.TopUp, key: str | None) -> idempotency.Outcome:
        """Credit an account once per ``Idempotency-Key`` (required: a retry must not credit twice)."""
        if not key:
            raise InvalidBody("A top-up needs an Idempotency-Key header: a retry with it credits once.")
        micros = parse_usd(str(request.amount_usd))
        account = ids.parse_id(request.account_id, ids.ACCOUNT)

        def run(_: UUID) -> s.TopUpAnswer:
            position = self._services.accounts.add_credits(
                AddCredits(account_id=account, amount=micros, at=_now())
            )
            self._follower.settle(account, position)
            balance = self._services.accounts.get(account).balance
            return s.TopUpAnswer(
                account_id=request.account_id, amount_usd=format_usd(micros), balance_usd=format_usd(balance)
            )

        return idempotency.run_once(
            self._state,
            account_id=principal.account_id,
            key=key,
            request=idempotency.fingerprint("top_up", request.account_id, micros),
            status=201,
            command=run,
        )

    def usage(self, principal: Principal, org_id: str | None = None) -> s.UsageExport:
        """Usage per deployment and minute: the caller's account's, or an organisation's it administers."""
        account = principal.account_id
        if org_id is not None:
            self.checks.in_org(principal, org_id, ADMIN)
            account = org_id
        with self._views.read() as tx:
            rows = queries.usage_by_minute(tx, account)
        return s.UsageExport(
            account_id=account,
            data=[
                s.UsageRow(
                    deployment_id=ids.deployment_ref(UUID(hex=r.deployment_id)),
                    minute=r.minute,
                    requests=r.requests,
                    prompt_tokens=r.prompt_tokens,
                    completion_tokens=r.completion_tokens,
                    charged_usd=format_usd(r.charged),
                )
                for r in rows
            ],
        )

    def ledger(self, principal: Principal) -> s.Ledger:
        """The caller's account's balance, holds, and every credit and charge in order."""
        with self._views.read() as tx:
            found = balance_of(tx, principal.account_id)
            lines = ledger_of_account(tx, principal.account_id)
        return s.Ledger(
            account_id=principal.account_id,
            plan=found.plan if found else "free",
            balance_usd=format_usd(found.balance if found else 0),
            reserved_usd=format_usd(found.reserved if found else 0),
            available_usd=format_usd(found.available if found else 0),
            data=[
                s.LedgerEntry(
                    at=line.at,
                    kind=line.kind,
                    amount_usd=format_usd(line.amount),
                    balance_after_usd=format_usd(line.balance_after),
                    event_id=line.event_id,
                    deployment_minute=line.minute,
                    metered_event=line.source_event,
                )
                for line in lines
            ],
        )
