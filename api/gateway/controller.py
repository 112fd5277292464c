"""Chat on an instance: the native shape, and the OpenAI shape (whole or streamed)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, RawBody, SkipValidation

from modelyard.api.errors import COMMON_ERRORS, COMMON_OPENAI_ERRORS, OPENAI_ERRORS
from modelyard.api.gateway.calls import Call, Gateway
from modelyard.api.gateway.requests import ChatRequest, native_body, openai_body
from modelyard.api.gateway.sse import EventStream, opened
from modelyard.domain.shared.errors import ModelNotFound

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

    @get(
        "/{instance_id:str}/v1/models",
        operation_id="listModelsOnInstance",
        responses=COMMON_OPENAI_ERRORS,
        opt=OPENAI_ERRORS,
    )
    async def models_on_instance(
        self,
        gateway: NamedDependency[SkipValidation[Gateway]],
        instance_id: FromPath[str],
        authorization: Authorization = "",
    ) -> dict[str, Any]:
        """OpenAI's model list under the instance's base URL: the one model it serves."""
        call = await gateway.open(authorization, instance_id)
        return {"object": "list", "data": [_model_card(call.model)]}

    @get(
        "/{instance_id:str}/v1/models/{model_id:str}",
        operation_id="getModelOnInstance",
        responses=COMMON_OPENAI_ERRORS,
        opt=OPENAI_ERRORS,
    )
    async def model_on_instance(
        self,
        gateway: NamedDependency[SkipValidation[Gateway]],
        instance_id: FromPath[str],
        model_id: FromPath[str],
        authorization: Authorization = "",
    ) -> dict[str, Any]:
        """OpenAI's model object, for the model the instance serves (404 for any other)."""
        call = await gateway.open(authorization, instance_id)
        if model_id != call.model:
            raise ModelNotFound(f"This instance serves {call.model}, not {model_id}.")
        return _model_card(call.model)


def _model_card(model: str) -> dict[str, Any]:
    """OpenAI's ``model`` object; ``created`` is unknown for a catalog model, so 0."""
    return {"id": model, "object": "model", "created": 0, "owned_by": "modelyard"}


async def _answer(gateway: Gateway, call: Call, request: ChatRequest) -> Any:
    """Forward what the client sent and the gateway accepted, whole or as a stream."""
    if request.streamed:
        lease = await gateway.admit(call)
        return EventStream(await opened(gateway.stream(call, request.forwarded(), lease)))
    return await gateway.complete(call, request.forwarded())
