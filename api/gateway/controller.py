"""Chat on an instance: the native shape, and the OpenAI shape (whole or streamed)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, RawBody, SkipValidation
from litestar.response import Stream

from modelyard.api.errors import COMMON_ERRORS, COMMON_OPENAI_ERRORS, OPENAI_ERRORS
from modelyard.api.gateway.calls import Call, Gateway
from modelyard.api.gateway.requests import ChatRequest, native_body, openai_body

# Optional to Litestar, so that a request without one is API_KEY_REQUIRED (401) from the
# key check, not a missing-parameter 400.
Authorization = Annotated[str, HeaderParameter(name="authorization", required=False)]


class GatewayController(Controller):
    """Inference on an instance with its ``auxk_`` key (or a scoped key granted to it)."""

    path = "/v1"
    tags = ["inference"]

    @post("/{instance_id:str}/chat", operation_id="chatNative", status_code=200, responses=COMMON_ERRORS)
    async def native(
        self,
        gateway: NamedDependency[SkipValidation[Gateway]],
        instance_id: FromPath[str],
        body: RawBody,
        authorization: Authorization = "",
    ) -> Any:
        """``{"message": …}`` -> ``{"success": true, "data": {message, model, usage, response_time_ms}}``."""
        call = await gateway.open(authorization, instance_id)
        return await gateway.native(call, native_body(body))

    @post(
        "/{instance_id:str}/v1/chat/completions",
        operation_id="chatCompletionsOnInstance",
        status_code=200,
        responses=COMMON_OPENAI_ERRORS,
        opt=OPENAI_ERRORS,
    )
    async def openai_on_instance(
        self,
        gateway: NamedDependency[SkipValidation[Gateway]],
        instance_id: FromPath[str],
        body: RawBody,
        authorization: Authorization = "",
    ) -> Any:
        """OpenAI ``chat.completion`` (or its stream); the request's ``model`` is echoed, not used."""
        call = await gateway.open(authorization, instance_id)
        return await _answer(gateway, call, openai_body(body))

    @post(
        "/chat/completions",
        operation_id="chatCompletions",
        status_code=200,
        responses=COMMON_OPENAI_ERRORS,
        opt=OPENAI_ERRORS,
    )
    async def openai_by_key(
        self,
        gateway: NamedDependency[SkipValidation[Gateway]],
        body: RawBody,
        authorization: Authorization = "",
    ) -> Any:
        """OpenAI chat on the instance the ``auxk_`` key belongs to."""
        call = await gateway.open_by_key(authorization)
        return await _answer(gateway, call, openai_body(body))


async def _answer(gateway: Gateway, call: Call, request: ChatRequest) -> Any:
    """Forward what the client sent and the gateway accepted, whole or as a stream."""
    if request.streamed:
        events = gateway.stream(call, request.forwarded())
        # Awaited before the status line: a refusal before the first event (every replica
        # busy, a bad request) is answered with its own status, not a broken 200 stream.
        first = await anext(events)
        return Stream(_chain(first, events), media_type="text/event-stream")
    return await gateway.complete(call, request.forwarded())


async def _chain(first: bytes, rest: AsyncGenerator[bytes]) -> AsyncIterator[bytes]:
    try:
        yield first
        async for event in rest:
            yield event
    finally:
        # A client gone mid-stream closes this; closing the rest closes the upstream call.
        await rest.aclose()
