"""``/v1/provision`` and ``/v1/instances``: the first document's management routes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromPath, JSONBody

from modelyard.adapters.keygen import INSTANCE_PREFIX, new_secret
from modelyard.adapters.state import secrets
from modelyard.api import idempotency
from modelyard.api.auth import Principal, management_guard
from modelyard.api.backend import Backend
from modelyard.api.errors import COMMON_ERRORS
from modelyard.api.instances import presenters
from modelyard.api.instances.schemas import ProvisionRequest, ScaleRequest
from modelyard.domain.catalog.models import CATALOG, ModelSpec
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import InstanceNotFound
from modelyard.domain.shared.money import format_usd
from modelyard.projections.balances.queries import Balance, balance_of, charges_by_deployment
from modelyard.projections.deployments.queries import instance_for_account, instances_of_account
from modelyard.projections.keys.queries import instance_key_hint

Envelope = dict[str, Any]


def _ok(data: Any) -> Envelope:
    return {"success": True, "data": msgspec.to_builtins(data)}


def _now() -> datetime:
    return datetime.now(UTC)


def _backend(request: Request[Any, Any, Any]) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


def _show(backend: Backend, account_id: str, dep_id: str) -> Envelope:
    deployment = ids.parse_deployment_id(dep_id)
    with backend.views.read() as tx:
        row = instance_for_account(tx, account_id, deployment)
        if row is None or row.state == "destroyed":
            raise InstanceNotFound(f"No instance {dep_id} on this account (or it was destroyed).")
        hint = instance_key_hint(tx, deployment)
    with backend.state.read() as tx:
        secret = secrets.peek(tx, deployment)
    instance = presenters.instance(row, backend.settings.base_url, secret, hint)
    return _ok({"instance": instance})


def _owned(backend: Backend, account_id: str, dep_id: str) -> str:
    """The instance id if it belongs to the account and is not destroyed; else INSTANCE_NOT_FOUND."""
    deployment = ids.parse_deployment_id(dep_id)
    with backend.views.read() as tx:
        row = instance_for_account(tx, account_id, deployment)
    if row is None or row.state == "destroyed":
        raise InstanceNotFound(f"No instance {dep_id} on this account (or it was destroyed).")
    return dep_id


def _once(
    request: Request[Any, Any, Any],
    principal: Principal,
    payload: bytes,
    status: int,
    command: Callable[[], Envelope],
) -> Response[Any]:
    return idempotency.run_once(
        _backend(request).state,
        account_id=principal.account_id,
        key=request.headers.get("idempotency-key"),
        request=payload,
        status=status,
        command=command,
    )


class InstancesController(Controller):
    """Provision, poll, list, scale and destroy instances."""

    path = "/v1"
    tags = ["instances"]
    guards = [management_guard]

    @post(
        "/provision", operation_id="provision", status_code=201, sync_to_thread=True, responses=COMMON_ERRORS
    )
    def provision(self, request: Request[Any, Any, Any], data: JSONBody[ProvisionRequest]) -> Response[Any]:
        """Provision an instance; returns at once with status ``provisioning``.

        Send an ``Idempotency-Key`` header and retry with the same key: a retry returns the
        first result and provisions nothing new.
        """
        principal: Principal = request.state.principal
        data.check_billing()
        return _once(
            request,
            principal,
            b"provision" + msgspec.json.encode(data),
            201,
            lambda: self._provision(request, principal, data),
        )

    def _provision(
        self, request: Request[Any, Any, Any], principal: Principal, data: ProvisionRequest
    ) -> Envelope:
        backend = _backend(request)
        parsed = data
        secret, digest, display = new_secret(INSTANCE_PREFIX)
        deployment, _ = backend.yard.provision(
            key_hash=digest,
            key_display=display,
            at=_now(),
            account_id=ids.parse_id(principal.account_id, ids.ACCOUNT),
            model=parsed.model,
            capacity=parsed.capacity,
            tier=parsed.tier,
            name=parsed.name,
            prefix=ids.INSTANCE,
        )
        dep_id = ids.instance_ref(deployment)
        with backend.state.transaction() as tx:
            secrets.keep(tx, deployment, secret)
        backend.settle(deployment, 1)
        return _show(backend, principal.account_id, dep_id)

    @get("/instances", operation_id="listInstances", sync_to_thread=True, responses=COMMON_ERRORS)
    def list_instances(self, request: Request[Any, Any, Any]) -> Envelope:
        """Every instance of the account that is not destroyed."""
        principal: Principal = request.state.principal
        backend = _backend(request)
        with backend.views.read() as tx:
            rows = [r for r in instances_of_account(tx, principal.account_id) if r.state != "destroyed"]
        shown = [presenters.instance(r, backend.settings.base_url, None, None) for r in rows]
        return _ok({"instances": shown, "count": len(shown)})

    @get(
        "/instances/{instance_id:str}",
        operation_id="getInstance",
        sync_to_thread=True,
        responses=COMMON_ERRORS,
    )
    def get_instance(self, request: Request[Any, Any, Any], instance_id: FromPath[str]) -> Envelope:
        """One instance; once running it carries ``endpoint`` and ``api_key``."""
        principal: Principal = request.state.principal
        return _show(
            _backend(request),
            principal.account_id,
            _owned(_backend(request), principal.account_id, instance_id),
        )

    @delete(
        "/instances/{instance_id:str}",
        operation_id="destroyInstance",
        status_code=200,
        sync_to_thread=True,
        responses=COMMON_ERRORS,
    )
    def destroy(self, request: Request[Any, Any, Any], instance_id: FromPath[str]) -> Response[Any]:
        """Destroy: billing stops now; the replicas stop in the background."""
        principal: Principal = request.state.principal
        return _once(
            request,
            principal,
            b"destroy " + instance_id.encode(),
            200,
            lambda: self._destroy(request, principal, instance_id),
        )

    def _destroy(self, request: Request[Any, Any, Any], principal: Principal, instance_id: str) -> Envelope:
        backend = _backend(request)
        dep_id = _owned(backend, principal.account_id, instance_id)
        uuid = ids.parse_deployment_id(dep_id)
        backend.yard.request_teardown(uuid, at=_now())
        backend.settle(uuid, backend.yard.get_deployment(uuid).version)
        with backend.state.transaction() as tx:
            secrets.forget(tx, uuid)
        return _show(backend, principal.account_id, dep_id)

    @post(
        "/instances/{instance_id:str}/scale",
        operation_id="scaleInstance",
        status_code=200,
        sync_to_thread=True,
        responses=COMMON_ERRORS,
    )
    def scale(
        self, request: Request[Any, Any, Any], instance_id: FromPath[str], data: JSONBody[ScaleRequest]
    ) -> Response[Any]:
        """Ask for capacity 1, 2, 4 or 8 (``Idempotency-Key`` makes a retry safe)."""
        principal: Principal = request.state.principal
        payload = b"scale " + instance_id.encode() + msgspec.json.encode(data)
        return _once(
            request, principal, payload, 200, lambda: self._scale(request, principal, instance_id, data)
        )

    def _scale(
        self, request: Request[Any, Any, Any], principal: Principal, instance_id: str, data: ScaleRequest
    ) -> Envelope:
        backend = _backend(request)
        parsed = data
        dep_id = _owned(backend, principal.account_id, instance_id)
        uuid = ids.parse_deployment_id(dep_id)
        backend.yard.request_scale(uuid, parsed.capacity, at=_now())
        backend.settle(uuid, backend.yard.get_deployment(uuid).version)
        return _show(backend, principal.account_id, dep_id)

    @get("/models", operation_id="listModels", sync_to_thread=False, responses=COMMON_ERRORS)
    def models(self) -> Envelope:
        """The catalog with prices per hour at 1x."""
        return _ok({"models": [_model_row(m) for m in CATALOG if m.active]})

    @get("/balance", operation_id="getBalance", sync_to_thread=True, responses=COMMON_ERRORS)
    def balance(self, request: Request[Any, Any, Any]) -> Envelope:
        """The account's prepaid balance."""
        principal: Principal = request.state.principal
        with _backend(request).views.read() as tx:
            found = balance_of(tx, principal.account_id)
        row = found or Balance(plan="free", balance=0, credited=0, charged=0)
        balance, credited, charged, plan = row.balance, row.credited, row.charged, row.plan
        return _ok(
            {
                "account_id": principal.account_id,
                "plan": plan,
                "balance_usd": format_usd(int(balance)),
                "balance_micros": int(balance),
                "credited_usd": format_usd(int(credited)),
                "charged_usd": format_usd(int(charged)),
            }
        )

    @get("/usage", operation_id="getUsage", sync_to_thread=True, responses=COMMON_ERRORS)
    def usage(self, request: Request[Any, Any, Any]) -> Envelope:
        """Charges per instance: minutes metered and what they cost."""
        principal: Principal = request.state.principal
        with _backend(request).views.read() as tx:
            rows = charges_by_deployment(tx, principal.account_id)
        per = [
            {"instance_uuid": str(r.deployment_id), "minutes": r.minutes, "charged_usd": format_usd(r.amount)}
            for r in rows
        ]
        total = sum(r.amount for r in rows)
        return _ok({"account_id": principal.account_id, "instances": per, "charged_usd": format_usd(total)})


def _model_row(model: ModelSpec) -> dict[str, Any]:
    size = model.size.value
    shared = format_usd(presenters.price_per_hour("shared", size, 1)) if size == "small" else None
    return {
        "id": model.id,
        "name": model.name,
        "size": size,
        "kind": model.kind.value,
        "plan": model.plan.value,
        "context_window": model.context_window,
        "cpu": model.cpu,
        "price_per_hour_usd": {
            "dedicated": format_usd(presenters.price_per_hour("dedicated", size, 1)),
            "shared": shared,
        },
    }
