"""Chat on an instance: the native shape, and the OpenAI shape (whole or streamed)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, RawBody, SkipValidation
from litestar.response import Stream

from modelyard.api.errors import COMMON_ERRORS
from modelyard.api.gateway.calls import Call, Gateway
from modelyard.api.gateway.requests import NativeChat, openai_body
from modelyard.domain.shared.errors import InvalidRequest

Authorization = Annotated[str, HeaderParameter(name="authorization")]


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
        try:
            chat = msgspec.json.decode(body or b"null", type=NativeChat)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidRequest(f"Invalid request: {exc}.") from None
        return await gateway.native(call, chat)

    @post(
        "/{instance_id:str}/v1/chat/completions",
        operation_id="chatCompletionsOnInstance",
        status_code=200,
        responses=COMMON_ERRORS,
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

    @post("/chat/completions", operation_id="chatCompletions", status_code=200, responses=COMMON_ERRORS)
    async def openai_by_key(
        self,
        gateway: NamedDependency[SkipValidation[Gateway]],
        body: RawBody,
        authorization: Authorization = "",
    ) -> Any:
        """OpenAI chat on the instance the ``auxk_`` key belongs to."""
        call = await gateway.open_by_key(authorization)
        return await _answer(gateway, call, openai_body(body))


async def _answer(gateway: Gateway, call: Call, body: dict[str, Any]) -> Any:
    if body.get("stream"):
        return Stream(gateway.stream(call, body), media_type="text/event-stream")
    return await gateway.complete(call, body)
