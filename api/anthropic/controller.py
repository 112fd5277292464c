"""Anthropic's Messages API on an instance: by the instance's base URL, and by its key.

The official ``anthropic`` SDK works pointed at ``{endpoint}`` (it calls
``{endpoint}/v1/messages``) or at the server's root with the instance's ``auxk_`` key. The
key comes as ``x-api-key`` (the SDK's ``api_key``) or ``Authorization: Bearer``
(``auth_token``); ``anthropic-version`` is required. The request is translated into the
engine's OpenAI chat, served by the gateway (usage recorded as for every chat), and its
answer translated back. Errors answer in Anthropic's shape.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, RawBody, SkipValidation

from modelyard.api.anthropic import replies
from modelyard.api.anthropic.requests import MessagesRequest, check_version, messages_body, to_openai
from modelyard.api.errors import ANTHROPIC_ERRORS, documented_anthropic
from modelyard.api.gateway.calls import Call, Gateway
from modelyard.api.gateway.sse import EventStream, opened

# Optional to Litestar: a missing key is API_KEY_REQUIRED (401), a missing version our 400.
Authorization = Annotated[str, HeaderParameter(name="authorization", required=False)]
ApiKey = Annotated[str, HeaderParameter(name="x-api-key", required=False)]
Version = Annotated[str, HeaderParameter(name="anthropic-version", required=False)]
ERRORS = documented_anthropic(400, 401, 403, 404, 409, 429, 502)


def _bearer(authorization: str, api_key: str) -> str:
    """The key as the gateway reads it, from whichever header carried it."""
    return authorization or (f"Bearer {api_key}" if api_key else "")


class AnthropicController(Controller):
    """``POST /v1/messages`` with the instance's ``auxk_`` key (or a scoped key granted to it)."""

    path = "/v1"
    tags = ["inference"]

    @post(
        "/{instance_id:str}/v1/messages",
        operation_id="messagesOnInstance",
        status_code=200,
        responses=ERRORS,
        opt=ANTHROPIC_ERRORS,
    )
    async def on_instance(
        self,
        *,
        gateway: NamedDependency[SkipValidation[Gateway]],
        instance_id: FromPath[str],
        body: RawBody,
        authorization: Authorization = "",
        x_api_key: ApiKey = "",
        anthropic_version: Version = "",
    ) -> Any:
        """An Anthropic ``message`` (or its stream of events) from the instance's model."""
        call = await gateway.open(_bearer(authorization, x_api_key), instance_id)
        check_version(anthropic_version)
        return await _answer(gateway, call, messages_body(body))

    @post("/messages", operation_id="messages", status_code=200, responses=ERRORS, opt=ANTHROPIC_ERRORS)
    async def by_key(
        self,
        *,
        gateway: NamedDependency[SkipValidation[Gateway]],
        body: RawBody,
        authorization: Authorization = "",
        x_api_key: ApiKey = "",
        anthropic_version: Version = "",
    ) -> Any:
        """An Anthropic ``message`` from the instance the ``auxk_`` key belongs to."""
        call = await gateway.open_by_key(_bearer(authorization, x_api_key))
        check_version(anthropic_version)
        return await _answer(gateway, call, messages_body(body))


async def _answer(gateway: Gateway, call: Call, request: MessagesRequest) -> Any:
    """Ask the engine in OpenAI's terms; answer in Anthropic's, whole or streamed."""
    body = to_openai(request)
    if request.streamed:
        upstream = {**body, "stream": True, "stream_options": {"include_usage": True}}
        chunks = await opened(gateway.stream(call, upstream))
        return EventStream(replies.events(chunks, request.model))
    return replies.whole(await gateway.complete(call, body), request.model)
