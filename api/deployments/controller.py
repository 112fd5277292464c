"""``/api/v1/public/deployments``: the second document's deployment routes.

Handlers are a few lines: the use cases (``Deployments``, injected), the caller
(``request.user``, authenticated by the management guard before the body is read) and the
request; answers are the second document's top-level objects, errors OpenAI's shape with
the product's stable codes.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody, SkipValidation

from modelyard.api import idempotency
from modelyard.api.auth import Principal
from modelyard.api.bodies import bounded_body
from modelyard.api.deployments.actions import Deployments
from modelyard.api.deployments.schemas import (
    CreateDeployment,
    Deployment,
    DeploymentList,
    ScalingAnswer,
    ScalingPatch,
    SlaAnswer,
    SlaPatch,
)
from modelyard.api.errors import COMMON_OPENAI_ERRORS, OPENAI_ERRORS

IdempotencyKey = Annotated[str | None, HeaderParameter(name="idempotency-key")]
Uses = NamedDependency[SkipValidation[Deployments]]
Caller = Request[Principal, Any, Any]


class DeploymentsController(Controller):
    """Create, list, get and delete deployments; their autoscaling and SLA."""

    path = "/api/v1/public/deployments"
    tags = ["deployments"]
    before_request = staticmethod(bounded_body)
    opt = OPENAI_ERRORS

    @post(
        "/",
        operation_id="createDeployment",
        status_code=201,
        sync_to_thread=True,
        responses=COMMON_OPENAI_ERRORS,
    )
    def create(
        self,
        fleet: Uses,
        request: Caller,
        data: JSONBody[CreateDeployment],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Deployment]:
        """Create a deployment; answers at once with ``status: provisioning`` (then ``active``).

        A model this cluster cannot place is refused now (502 PROVISIONING_FAILED, nothing
        recorded). Retry with the same ``Idempotency-Key``: the first answer comes back.
        """
        return idempotency.response(fleet.create(request.user, data, idempotency_key))

    @get("/", operation_id="listDeployments", sync_to_thread=True, responses=COMMON_OPENAI_ERRORS)
    def list_deployments(self, fleet: Uses, request: Caller) -> DeploymentList:
        """Every deployment of the account, oldest first (ended ones as ``inactive``)."""
        return fleet.list(request.user)

    @get(
        "/{deployment_id:str}",
        operation_id="getDeployment",
        sync_to_thread=True,
        responses=COMMON_OPENAI_ERRORS,
    )
    def get_deployment(self, fleet: Uses, request: Caller, deployment_id: FromPath[str]) -> Deployment:
        """One deployment: its status, hardware, preset and engine arguments, scaling and SLA."""
        return fleet.show(request.user, deployment_id)

    @delete(
        "/{deployment_id:str}",
        operation_id="deleteDeployment",
        status_code=200,
        sync_to_thread=True,
        responses=COMMON_OPENAI_ERRORS,
    )
    def delete_deployment(
        self,
        fleet: Uses,
        request: Caller,
        deployment_id: FromPath[str],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Deployment]:
        """Tear down: billing stops now and is settled at once; the balance read next is final."""
        return idempotency.response(fleet.delete(request.user, deployment_id, idempotency_key))

    @get(
        "/{deployment_id:str}/scaling",
        operation_id="getScaling",
        sync_to_thread=True,
        responses=COMMON_OPENAI_ERRORS,
    )
    def get_scaling(self, fleet: Uses, request: Caller, deployment_id: FromPath[str]) -> ScalingAnswer:
        """The autoscaling policy and the replicas now."""
        return fleet.scaling(request.user, deployment_id)

    @patch(
        "/{deployment_id:str}/scaling",
        operation_id="setScaling",
        sync_to_thread=True,
        responses=COMMON_OPENAI_ERRORS,
    )
    def set_scaling(
        self, fleet: Uses, request: Caller, deployment_id: FromPath[str], data: JSONBody[ScalingPatch]
    ) -> ScalingAnswer:
        """Set ``min_replicas``, ``max_replicas``, ``scale_to_zero``, ``idle_timeout_seconds``
        (fields left out keep their values); the autoscaler acts within them."""
        return fleet.set_scaling(request.user, deployment_id, data)

    @get(
        "/{deployment_id:str}/sla", operation_id="getSla", sync_to_thread=True, responses=COMMON_OPENAI_ERRORS
    )
    def get_sla(self, fleet: Uses, request: Caller, deployment_id: FromPath[str]) -> SlaAnswer:
        """The SLA targets and the breach history."""
        return fleet.sla(request.user, deployment_id)

    @patch(
        "/{deployment_id:str}/sla", operation_id="setSla", sync_to_thread=True, responses=COMMON_OPENAI_ERRORS
    )
    def set_sla(
        self, fleet: Uses, request: Caller, deployment_id: FromPath[str], data: JSONBody[SlaPatch]
    ) -> SlaAnswer:
        """Set ``ttft_target_ms``, ``throughput_target_tps``, ``concurrency_limit`` (null: none;
        fields left out keep their values)."""
        return fleet.set_sla(request.user, deployment_id, data)
