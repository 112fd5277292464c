"""``…/deployments/{id}/webhooks`` (second dialect) and ``/v1/instances/{id}/webhooks`` (first).

One set of handlers, mounted under both dialects' paths; either takes either dialect's id
(``dep_…`` or ``inst_…``). Handlers are a few lines: the use cases (``webhooks``), the
caller (``request.user``, authenticated by the management guard), the request.
"""

from __future__ import annotations

from typing import Any, Literal

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, SkipValidation

from modelyard.api.auth import Principal
from modelyard.api.bodies import bounded_body
from modelyard.api.errors import COMMON_ERRORS
from modelyard.api.webhooks.actions import Webhooks
from modelyard.api.webhooks.schemas import (
    DeliveryListAnswer,
    RedriveAnswer,
    WebhookAnswer,
    WebhookListAnswer,
    WebhookRequest,
)

Uses = NamedDependency[SkipValidation[Webhooks]]
Caller = Request[Principal, Any, Any]
DeliveryStatus = Literal["pending", "delivered", "dead", "cancelled", "redrive"]


class _WebhookRoutes(Controller):
    """Subscribe, list, remove, rotate; deliveries and re-drive."""

    tags = ["webhooks"]
    before_request = staticmethod(bounded_body)

    @post("/{deployment_id:str}/webhooks", status_code=201, sync_to_thread=True, responses=COMMON_ERRORS)
    def subscribe(
        self, webhooks: Uses, request: Caller, deployment_id: FromPath[str], data: JSONBody[WebhookRequest]
    ) -> WebhookAnswer:
        """Subscribe a URL to some of the deployment's events; the signing secret is shown this once."""
        return webhooks.subscribe(request.user, deployment_id, data)

    @get("/{deployment_id:str}/webhooks", sync_to_thread=True, responses=COMMON_ERRORS)
    def list_webhooks(
        self, webhooks: Uses, request: Caller, deployment_id: FromPath[str]
    ) -> WebhookListAnswer:
        """The deployment's subscriptions (without secrets)."""
        return webhooks.list(request.user, deployment_id)

    @delete(
        "/{deployment_id:str}/webhooks/{webhook_id:str}",
        status_code=200,
        sync_to_thread=True,
        responses=COMMON_ERRORS,
    )
    def remove(
        self, webhooks: Uses, request: Caller, deployment_id: FromPath[str], webhook_id: FromPath[str]
    ) -> WebhookAnswer:
        """End a subscription."""
        return webhooks.remove(request.user, deployment_id, webhook_id)

    @post(
        "/{deployment_id:str}/webhooks/{webhook_id:str}/rotate-secret",
        status_code=200,
        sync_to_thread=True,
        responses=COMMON_ERRORS,
    )
    def rotate(
        self, webhooks: Uses, request: Caller, deployment_id: FromPath[str], webhook_id: FromPath[str]
    ) -> WebhookAnswer:
        """A new signing secret (shown once); the old one keeps signing for the overlap window."""
        return webhooks.rotate(request.user, deployment_id, webhook_id)

    @get(
        "/{deployment_id:str}/webhooks/{webhook_id:str}/deliveries",
        sync_to_thread=True,
        responses=COMMON_ERRORS,
    )
    def deliveries(
        self,
        webhooks: Uses,
        request: Caller,
        deployment_id: FromPath[str],
        webhook_id: FromPath[str],
        status: FromQuery[DeliveryStatus | None] = None,
    ) -> DeliveryListAnswer:
        """Every delivery with every try, newest event first; ``status=dead`` lists the dead letters."""
        return webhooks.deliveries(request.user, deployment_id, webhook_id, status)

    @post(
        "/{deployment_id:str}/webhooks/{webhook_id:str}/redrive",
        status_code=200,
        sync_to_thread=True,
        responses=COMMON_ERRORS,
    )
    def redrive(
        self, webhooks: Uses, request: Caller, deployment_id: FromPath[str], webhook_id: FromPath[str]
    ) -> RedriveAnswer:
        """Send the subscription's dead letters again."""
        return webhooks.redrive(request.user, deployment_id, webhook_id)


class DeploymentWebhooksController(_WebhookRoutes):
    """The second dialect's paths."""

    path = "/api/v1/public/deployments"


class InstanceWebhooksController(_WebhookRoutes):
    """The first dialect's paths."""

    path = "/v1/instances"
