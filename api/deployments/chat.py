"""``POST /api/v1/public/deployments/{id}/chat/completions``: OpenAI chat on one deployment.

The second document's "same request schema as standard chat", answered in OpenAI's shape
(whole or streamed), through the gateway's forwarding. The caller holds the deployment's
inference key (or a scoped key granted it), as on the first dialect's instance routes, or
a management key of the account the deployment belongs to.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

import anyio
from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, RawBody, SkipValidation

from modelyard.api.access.limits import TokenLimits
from modelyard.api.auth import Principal, bearer_secret
from modelyard.api.deployments.actions import Deployments
from modelyard.api.errors import COMMON_OPENAI_ERRORS, OPENAI_ERRORS
from modelyard.api.gateway.calls import Call, Gateway
from modelyard.api.gateway.requests import ChatRequest, openai_body
from modelyard.api.gateway.sse import EventStream, opened
from modelyard.domain.keys.aggregate import KeyKind
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import InstanceNotFound

# Optional to Litestar, so that a request without one is API_KEY_REQUIRED (401) from the key check.
Authorization = Annotated[str, HeaderParameter(name="authorization", required=False)]


def _managed_call(
    gateway: Gateway, deployments: Deployments, principal: Principal, deployment: uuid.UUID, shown: str
) -> Call:
    """A call by a management key: the deployment must be its account's, and serving (or woken)."""
    started = time.perf_counter()
    if not deployments.owns(principal, deployment):
        raise InstanceNotFound(f"No deployment {shown} on this account.")
    return gateway.call_as(principal, deployment, shown, started)


async def open_call(gateway: Gateway, deployments: Deployments, authorization: str, shown: str) -> Call:
    """The call on the deployment ``shown`` names, by an inference key or a management key."""
    secret = bearer_secret(authorization)
    if gateway.keys.cached(secret):
        principal = gateway.keys.lookup(secret)
    else:
        principal = await anyio.to_thread.run_sync(gateway.keys.lookup, secret)
    if principal is not None and principal.kind is KeyKind.MANAGEMENT:
        deployment = ids.parse_deployment_id(shown)
        call = await anyio.to_thread.run_sync(
            _managed_call, gateway, deployments, principal, deployment, shown
        )
        return await gateway.woken(call, shown)
    return await gateway.open(authorization, shown)


async def answer(gateway: Gateway, call: Call, request: ChatRequest, tokens: TokenLimits) -> Any:
    """Forward what the client sent and the gateway accepted, whole or as a stream, within the
    caller's plan's tokens per minute (held before, settled by the answer's usage)."""
    forwarded = request.forwarded()
    held = await anyio.to_thread.run_sync(tokens.admit, call.principal, forwarded)
    call.on_usage = held.settle
    try:
        if request.streamed:
            lease = await gateway.admit(call)
            return EventStream(await opened(gateway.stream(call, forwarded, lease)))
        return await gateway.complete(call, forwarded)
    finally:
        if not request.streamed:
            held.release_unsettled()


class DeploymentChatController(Controller):
    """OpenAI chat completions on a deployment (FEATURES B4, the non-org route)."""

    path = "/api/v1/public/deployments"
    tags = ["inference"]

    @post(
        "/{deployment_id:str}/chat/completions",
        operation_id="chatCompletionsOnDeployment",
        status_code=200,
        responses=COMMON_OPENAI_ERRORS,
        opt=OPENAI_ERRORS,
    )
    async def chat(
        self,
        *,
        gateway: NamedDependency[SkipValidation[Gateway]],
        fleet: NamedDependency[SkipValidation[Deployments]],
        tokens: NamedDependency[SkipValidation[TokenLimits]],
        deployment_id: FromPath[str],
        body: RawBody,
        authorization: Authorization = "",
    ) -> Any:
        """OpenAI ``chat.completion`` (or its stream) on the deployment; ``model`` is echoed, not used.

        Authorize with the deployment's inference key or a management key of its account.
        """
        call = await open_call(gateway, fleet, authorization, deployment_id)
        return await answer(gateway, call, openai_body(body), tokens)
