"""The access routes: the catalog by plan, keys, per-deployment grants, organisations, credits.

Paths follow the second document (``/api/v1/public/…``); the grants are also on the first
dialect's instance path (``/v1/instances/{id}/permissions``). Every handler is a few lines
over ``Access`` (the use cases) and its ``checks`` (the model of permissions).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import anyio
import msgspec
from litestar import Controller, MediaType, Request, Response, delete, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter, RawBody, SkipValidation

from modelyard.api import idempotency
from modelyard.api.access import schemas as s
from modelyard.api.access.actions import Access, csv_of
from modelyard.api.access.limits import TokenLimits
from modelyard.api.auth import KeyCache, Principal, bearer_secret
from modelyard.api.bodies import bounded_body
from modelyard.api.deployments.chat import answer
from modelyard.api.errors import (
    COMMON_ERRORS,
    COMMON_OPENAI_ERRORS,
    OPENAI_ERRORS,
    InvalidApiKey,
    InvalidBody,
)
from modelyard.api.gateway.calls import Gateway
from modelyard.api.gateway.requests import openai_body
from modelyard.domain.access.model import INVOKE
from modelyard.domain.keys.aggregate import KeyKind

IdempotencyKey = Annotated[str | None, HeaderParameter(name="idempotency-key")]
Uses = NamedDependency[SkipValidation[Access]]
Caller = Request[Principal, Any, Any]


class OperatorGuard:
    """Litestar guard: the request must carry an operator key (issued from the server's CLI)."""

    def __init__(self, keys: KeyCache) -> None:
        self._keys = keys

    def __deepcopy__(self, memo: dict[int, object]) -> OperatorGuard:
        return self

    async def __call__(self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        """Authenticate an operator key, or refuse with API_KEY_REQUIRED / INVALID_API_KEY."""
        secret = bearer_secret(connection.headers.get("authorization", ""))
        principal = await anyio.to_thread.run_sync(self._keys.lookup, secret)
        if principal is None or principal.kind is not KeyKind.OPERATOR:
            raise InvalidApiKey("Top-ups take an operator key (modelyard keys create-operator).")
        connection.scope["user"] = principal


class CatalogController(Controller):
    """The model catalog, and what the caller's plan reaches."""

    path = "/api/v1/public/models"
    tags = ["catalog"]

    @get("/", operation_id="publicListModels", sync_to_thread=False, responses=COMMON_ERRORS)
    def catalog(self, access: Uses) -> s.Catalog:
        """Every model: capabilities, pricing, context window, tier, what serves it here."""
        return access.catalog()

    @get("/available", operation_id="publicAvailableModels", sync_to_thread=False, responses=COMMON_ERRORS)
    def available(self, access: Uses, request: Caller) -> s.Catalog:
        """Only the models the caller's plan (free, basic, professional, enterprise) reaches."""
        return access.available(request.user)

    @get("/{model_id:str}", operation_id="publicGetModel", sync_to_thread=False, responses=COMMON_ERRORS)
    def model(self, access: Uses, model_id: FromPath[str]) -> s.CatalogEntry:
        """One model; an unknown id is MODEL_NOT_FOUND (404)."""
        return access.model(model_id)


class KeysController(Controller):
    """The account's API keys: list, create (shown once), revoke."""

    path = "/api/v1/public/keys"
    tags = ["keys"]
    before_request = staticmethod(bounded_body)

    @get("/", operation_id="listKeys", sync_to_thread=True, responses=COMMON_ERRORS)
    def list_keys(self, access: Uses, request: Caller) -> s.KeyList:
        """Every key of the account (never a secret), with grants and last use."""
        return access.list_keys(request.user)

    @post("/", operation_id="createKey", status_code=201, sync_to_thread=True, responses=COMMON_ERRORS)
    def create_key(
        self,
        access: Uses,
        request: Caller,
        data: JSONBody[s.CreateKey],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[s.KeyInfo]:
        """A management or scoped key; ``key`` (the secret) is in this answer only."""
        return idempotency.response(access.create_key(request.user, data, idempotency_key))

    @get("/{key_id:str}", operation_id="getKey", sync_to_thread=True, responses=COMMON_ERRORS)
    def show_key(self, access: Uses, request: Caller, key_id: FromPath[str]) -> s.KeyInfo:
        """One key of the account."""
        return access.show_key(request.user, key_id)

    @delete(
        "/{key_id:str}",
        operation_id="revokeKey",
        status_code=200,
        sync_to_thread=True,
        responses=COMMON_ERRORS,
    )
    def revoke_key(self, access: Uses, request: Caller, key_id: FromPath[str]) -> s.KeyInfo:
        """Revoke: refused everywhere within seconds."""
        return access.revoke_key(request.user, key_id)


def _permissions_controller(base: str, name: str) -> type[Controller]:
    class Permissions(Controller):
        path = base
        tags = ["permissions"]
        before_request = staticmethod(bounded_body)

        @get(
            "/{deployment_id:str}/permissions",
            operation_id=f"{name}ListPermissions",
            sync_to_thread=True,
            responses=COMMON_ERRORS,
        )
        def list_grants(
            self, access: Uses, request: Caller, deployment_id: FromPath[str]
        ) -> s.PermissionList:
            """The scoped keys granted this deployment."""
            return access.permissions(request.user, deployment_id)

        @post(
            "/{deployment_id:str}/permissions",
            operation_id=f"{name}Grant",
            status_code=201,
            sync_to_thread=True,
            responses=COMMON_ERRORS,
        )
        def grant(
            self, access: Uses, request: Caller, deployment_id: FromPath[str], data: JSONBody[s.Grant]
        ) -> s.Permission:
            """Let a scoped key of this account reach this deployment (``role``: ``inference``)."""
            return access.grant(request.user, deployment_id, data)

        @delete(
            "/{deployment_id:str}/permissions/{api_key_id:str}",
            operation_id=f"{name}Revoke",
            status_code=200,
            sync_to_thread=True,
            responses=COMMON_ERRORS,
        )
        def revoke(
            self, access: Uses, request: Caller, deployment_id: FromPath[str], api_key_id: FromPath[str]
        ) -> s.Permission:
            """Withdraw the grant: the key stops reaching the deployment within seconds."""
            return access.revoke_grant(request.user, deployment_id, api_key_id)

    Permissions.__name__ = f"{name.capitalize()}PermissionsController"
    return Permissions


DeploymentPermissions = _permissions_controller("/api/v1/public/deployments", "deployment")
InstancePermissions = _permissions_controller("/v1/instances", "instance")


class OrgsController(Controller):
    """Organisations: members with permissions, org-owned deployments and credit, org-scoped chat."""

    path = "/api/v1/public/orgs"
    tags = ["organizations"]
    before_request = staticmethod(bounded_body)

    @post("/", operation_id="createOrg", status_code=201, sync_to_thread=True, responses=COMMON_ERRORS)
    def create(self, access: Uses, request: Caller, data: JSONBody[s.CreateOrg]) -> s.OrgInfo:
        """Open an organisation; the caller's account is its first member (every permission)."""
        return access.create_org(request.user, data)

    @get("/", operation_id="listOrgs", sync_to_thread=True, responses=COMMON_ERRORS)
    def list_orgs(self, access: Uses, request: Caller) -> s.OrgList:
        """The organisations the caller's account belongs to."""
        return access.list_orgs(request.user)

    @get("/{org_id:str}", operation_id="getOrg", sync_to_thread=True, responses=COMMON_ERRORS)
    def show(self, access: Uses, request: Caller, org_id: FromPath[str]) -> s.OrgInfo:
        """An organisation the caller belongs to: members, plan, balance."""
        return access.show_org(request.user, org_id)

    @post(
        "/{org_id:str}/members",
        operation_id="addMember",
        status_code=201,
        sync_to_thread=True,
        responses=COMMON_ERRORS,
    )
    def add_member(
        self, access: Uses, request: Caller, org_id: FromPath[str], data: JSONBody[s.AddMember]
    ) -> s.OrgInfo:
        """Add an account with ``deployment:invoke`` / ``deployment:manage`` / ``org:admin``."""
        return access.add_member(request.user, org_id, data)

    @delete(
        "/{org_id:str}/members/{account_id:str}",
        operation_id="removeMember",
        status_code=200,
        sync_to_thread=True,
        responses=COMMON_ERRORS,
    )
    def remove_member(
        self, access: Uses, request: Caller, org_id: FromPath[str], account_id: FromPath[str]
    ) -> s.OrgInfo:
        """Remove a member; it loses access at once."""
        return access.remove_member(request.user, org_id, account_id)

    @post(
        "/{org_id:str}/deployments",
        operation_id="provisionInOrg",
        status_code=201,
        sync_to_thread=True,
        responses=COMMON_ERRORS,
    )
    def provision(
        self, access: Uses, request: Caller, org_id: FromPath[str], data: JSONBody[s.OrgDeployment]
    ) -> s.DeploymentInfo:
        """A deployment the organisation owns and pays for (``deployment:manage``)."""
        return access.provision_in_org(request.user, org_id, data)

    @get(
        "/{org_id:str}/deployments/{deployment_id:str}",
        operation_id="getOrgDeployment",
        sync_to_thread=True,
        responses=COMMON_ERRORS,
    )
    def deployment(
        self, access: Uses, request: Caller, org_id: FromPath[str], deployment_id: FromPath[str]
    ) -> s.DeploymentInfo:
        """One of the organisation's deployments."""
        return access.org_deployment(request.user, org_id, deployment_id)

    @get("/{org_id:str}/usage", operation_id="orgUsage", sync_to_thread=True, responses=COMMON_ERRORS)
    def usage(
        self,
        access: Uses,
        request: Caller,
        org_id: FromPath[str],
        format: Annotated[str, QueryParameter()] = "json",
    ) -> Response[Any]:
        """The organisation's usage per deployment and minute (``org:admin``), JSON or CSV."""
        return _export(access.usage(request.user, org_id), format)

    @post(
        "/{org_id:str}/deployments/{deployment_id:str}/chat/completions",
        operation_id="orgChatCompletions",
        status_code=200,
        responses=COMMON_OPENAI_ERRORS,
        opt=OPENAI_ERRORS,
    )
    async def chat(
        self,
        *,
        access: Uses,
        gateway: NamedDependency[SkipValidation[Gateway]],
        tokens: NamedDependency[SkipValidation[TokenLimits]],
        request: Caller,
        org_id: FromPath[str],
        deployment_id: FromPath[str],
        body: RawBody,
    ) -> Any:
        """OpenAI chat on an organisation's deployment: membership and ``deployment:invoke`` required."""
        principal = request.user
        deployment = await anyio.to_thread.run_sync(
            access.checks.in_org_deployment, principal, org_id, deployment_id, INVOKE
        )
        # Usage is the organisation's (it pays); the key that called is recorded with it.
        payer = msgspec.structs.replace(principal, account_id=org_id)
        opened = (payer, deployment, deployment_id, time.perf_counter())
        call = await anyio.to_thread.run_sync(gateway.call_as, *opened)
        return await answer(gateway, await gateway.woken(call, deployment_id), openai_body(body), tokens)


class UsageController(Controller):
    """The account owner's usage export."""

    path = "/api/v1/public/usage"
    tags = ["billing"]

    @get("/export", operation_id="usageExport", sync_to_thread=True, responses=COMMON_ERRORS)
    def export(
        self, access: Uses, request: Caller, format: Annotated[str, QueryParameter()] = "json"
    ) -> Response[Any]:
        """Usage per deployment and minute: requests, tokens, USD charged (``format`` json or csv)."""
        return _export(access.usage(request.user), format)

    @get("/ledger", operation_id="ledger", sync_to_thread=True, responses=COMMON_ERRORS)
    def ledger(self, access: Uses, request: Caller) -> s.Ledger:
        """The balance, what live deployments hold, and every credit and charge with its event."""
        return access.ledger(request.user)


def _export(export: s.UsageExport, format: str) -> Response[Any]:
    if format == "json":
        return Response(msgspec.json.encode(export), media_type=MediaType.JSON)
    if format == "csv":
        return Response(
            csv_of(export.data),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="usage-{export.account_id}.csv"'},
        )
    raise InvalidBody(f"Unknown format {format!r}; json or csv.")


class CreditsController(Controller):
    """Top-ups by an operator, once per ``Idempotency-Key``."""

    path = "/api/v1/public/credits"
    tags = ["billing"]
    before_request = staticmethod(bounded_body)

    @post("/", operation_id="topUp", status_code=201, sync_to_thread=True, responses=COMMON_ERRORS)
    def top_up(
        self, access: Uses, request: Caller, data: JSONBody[s.TopUp], idempotency_key: IdempotencyKey = None
    ) -> Response[s.TopUpAnswer]:
        """Add ``amount_usd`` to ``account_id``; a retry with the same ``Idempotency-Key`` credits once."""
        return idempotency.response(access.top_up(request.user, data, idempotency_key))
