"""``/v1/provision`` and ``/v1/instances``: the first document's management routes.

Handlers are a few lines: they take the use cases (``Instances``, the one injected
dependency: Litestar resolves two independent ones in a task group per request, which
cost more than the handler), the caller (``request.user``, authenticated by the
management guard before the body is read) and the request, and answer typed response
Structs. A body's nesting is measured before Litestar decodes it (``bounded_body``):
too deep is INVALID_REQUEST, never a RecursionError. Commands honour
``Idempotency-Key``: a retry with the same key returns the first answer and changes
nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody, SkipValidation

from modelyard.api import idempotency
from modelyard.api.auth import Principal
from modelyard.api.bodies import bounded_body
from modelyard.api.errors import COMMON_ERRORS
from modelyard.api.instances.actions import Instances
from modelyard.api.instances.schemas import (
    BalanceAnswer,
    InstanceAnswer,
    InstanceListAnswer,
    ModelListAnswer,
    ProvisionRequest,
    ScaleRequest,
    UsageAnswer,
)

# A retry with the same key returns the first answer and changes nothing.
IdempotencyKey = Annotated[str | None, HeaderParameter(name="idempotency-key")]


class InstancesController(Controller):
    """Provision, poll, list, scale and destroy instances; the catalog, balance and usage."""

    path = "/v1"
    tags = ["instances"]
    before_request = staticmethod(bounded_body)

    @post(
        "/provision", operation_id="provision", status_code=201, sync_to_thread=True, responses=COMMON_ERRORS
    )
    def provision(
        self,
        instances: NamedDependency[SkipValidation[Instances]],
        request: Request[Principal, Any, Any],
        data: JSONBody[ProvisionRequest],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[InstanceAnswer]:
        """Provision an instance; returns at once with status ``provisioning``.

        Send an ``Idempotency-Key`` header and retry with the same key: a retry returns the
        first result and provisions nothing new.
        """
        return idempotency.response(instances.provision(request.user, data, idempotency_key))

    @get("/instances", operation_id="listInstances", sync_to_thread=True, responses=COMMON_ERRORS)
    def list_instances(
        self, instances: NamedDependency[SkipValidation[Instances]], request: Request[Principal, Any, Any]
    ) -> InstanceListAnswer:
        """Every instance of the account that is not destroyed."""
        return instances.list(request.user)

    @get(
        "/instances/{instance_id:str}",
        operation_id="getInstance",
        sync_to_thread=True,
        responses=COMMON_ERRORS,
    )
    def get_instance(
        self,
        instances: NamedDependency[SkipValidation[Instances]],
        request: Request[Principal, Any, Any],
        instance_id: FromPath[str],
    ) -> InstanceAnswer:
        """One instance; once running it carries ``endpoint`` and ``api_key``."""
        return instances.show(request.user, instance_id)

    @delete(
        "/instances/{instance_id:str}",
        operation_id="destroyInstance",
        status_code=200,
        sync_to_thread=True,
        responses=COMMON_ERRORS,
    )
    def destroy(
        self,
        instances: NamedDependency[SkipValidation[Instances]],
        request: Request[Principal, Any, Any],
        instance_id: FromPath[str],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[InstanceAnswer]:
        """Destroy: billing stops now; the replicas stop in the background."""
        return idempotency.response(instances.destroy(request.user, instance_id, idempotency_key))

    @post(
        "/instances/{instance_id:str}/scale",
        operation_id="scaleInstance",
        status_code=200,
        sync_to_thread=True,
        responses=COMMON_ERRORS,
    )
    def scale(
        self,
        instances: NamedDependency[SkipValidation[Instances]],
        request: Request[Principal, Any, Any],
        instance_id: FromPath[str],
        data: JSONBody[ScaleRequest],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[InstanceAnswer]:
        """Ask for capacity 1, 2, 4 or 8 (``Idempotency-Key`` makes a retry safe)."""
        return idempotency.response(instances.scale(request.user, instance_id, data, idempotency_key))

    @get("/models", operation_id="listModels", sync_to_thread=False, responses=COMMON_ERRORS)
    def models(self, instances: NamedDependency[SkipValidation[Instances]]) -> ModelListAnswer:
        """The catalog with prices per hour at 1x."""
        return instances.models()

    @get("/balance", operation_id="getBalance", sync_to_thread=True, responses=COMMON_ERRORS)
    def balance(
        self, instances: NamedDependency[SkipValidation[Instances]], request: Request[Principal, Any, Any]
    ) -> BalanceAnswer:
        """The account's prepaid balance."""
        return instances.balance(request.user)

    @get("/usage", operation_id="getUsage", sync_to_thread=True, responses=COMMON_ERRORS)
    def usage(
        self, instances: NamedDependency[SkipValidation[Instances]], request: Request[Principal, Any, Any]
    ) -> UsageAnswer:
        """Charges per instance: minutes metered and what they cost."""
        return instances.usage(request.user)
