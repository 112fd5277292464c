"""Chat on an instance: the native shape, and the OpenAI shape (whole or streamed)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec
from litestar import Controller, Request, post
from litestar.params import FromPath, RawBody
from litestar.response import Response, Stream

from modelyard.adapters.state import secrets
from modelyard.api.auth import Principal, bearer, inference
from modelyard.api.backend import Backend
from modelyard.api.errors import COMMON_ERRORS
from modelyard.api.gateway.forwarder import Forwarder
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import InstanceNotFound, InstanceNotRunning, InvalidRequest
from modelyard.projections.metrics.records import usage_record

SERVING = ("running", "scaling", "degraded")


class NativeChat(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/{instanceId}/chat``."""

    message: str
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None


class _Call(msgspec.Struct, kw_only=True):
    """One inference call on its way through the gateway."""

    dep_id: uuid.UUID
    model: str
    principal: Principal
    started: float


def _backend(request: Request[Any, Any, Any]) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


def _open(request: Request[Any, Any, Any], instance_id: str) -> _Call:
    """Authenticate, and check the instance exists and serves."""
    started = time.perf_counter()
    dep_id = ids.parse_deployment_id(instance_id)
    principal = inference(request, dep_id.hex)
    forwarder: Forwarder = request.app.state.forwarder
    found = forwarder.deployment(dep_id)
    if found is None or found.state == "destroyed":
        raise InstanceNotFound(f"No instance {instance_id} (or it was destroyed).")
    if found.state not in SERVING:
        raise InstanceNotRunning(f"{instance_id} is {found.state}, not running: poll its status first.")
    return _Call(dep_id=dep_id, model=found.model, principal=principal, started=started)


async def _opened(request: Request[Any, Any, Any], instance_id: str) -> _Call:
    """``_open`` on the event loop when its lookups are cached, in a thread when not."""
    forwarder: Forwarder = request.app.state.forwarder
    if forwarder.cached(ids.parse_deployment_id(instance_id)) and request.app.state.key_cache.cached(
        bearer(request)
    ):
        return _open(request, instance_id)
    return await anyio.to_thread.run_sync(_open, request, instance_id)


def _record(
    request: Request[Any, Any, Any], call: _Call, usage: dict[str, Any], status: int, **extra: Any
) -> None:
    """Queue the usage record; on an instance key's first use, retire its one-time showing."""
    elapsed_ms = (time.perf_counter() - call.started) * 1000
    event = usage_record(
        record_id=uuid.uuid4(),
        at=datetime.now(UTC),
        deployment_id=call.dep_id.hex,
        model=call.model,
        account_id=call.principal.account_id,
        key_id=call.principal.key_id,
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
        latency_ms=elapsed_ms,
        status=status,
        **extra,
    )
    request.app.state.usage.submit(event)
    forwarder: Forwarder = request.app.state.forwarder
    if forwarder.first_use(call.dep_id):
        with _backend(request).state.transaction() as tx:
            secrets.forget(tx, call.dep_id)


async def _finish(request: Request[Any, Any, Any], call: _Call, usage: dict[str, Any], **extra: Any) -> None:
    forwarder: Forwarder = request.app.state.forwarder
    if forwarder.used(call.dep_id):
        _record(request, call, usage, 200, **extra)  # no I/O: only queues the record
    else:
        await anyio.to_thread.run_sync(lambda: _record(request, call, usage, 200, **extra))


# The chat.completions request fields this gateway accepts; like OpenAI, it refuses others.
CHAT_FIELDS = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed",
    "stream", "stream_options", "tools", "tool_choice", "user", "n", "presence_penalty", "frequency_penalty",
    "response_format", "parallel_tool_calls", "logit_bias", "metadata", "store",
})  # fmt: skip


def _json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = msgspec.json.decode(raw or b"null")
    except msgspec.DecodeError:
        raise InvalidRequest("The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.")
    unknown = sorted(set(body) - CHAT_FIELDS)
    if unknown:
        raise InvalidRequest(f"Unrecognized request argument supplied: {', '.join(unknown)}.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.")
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise InvalidRequest("Each message must be an object with a 'role'.")
    _check_tools(body.get("tools"))
    return body


def _check_tools(tools: Any) -> None:
    """Tools in the OpenAI shape: function tools with a name and an object schema."""
    if tools is None:
        return
    if not isinstance(tools, list) or not tools:
        raise InvalidRequest("'tools' must be a non-empty array.")
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise InvalidRequest(f"tools[{i}] must be {{'type': 'function', 'function': {{...}}}}.")
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise InvalidRequest(f"tools[{i}].function.name must be a non-empty string.")
        parameters = function.get("parameters", {"type": "object"})
        if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
            raise InvalidRequest(f"tools[{i}].function.parameters must be a JSON Schema object.")


def _upstream_error(status: int, answer: dict[str, Any]) -> Response[Any]:
    found = answer.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    return Response(
        {
            "error": {
                "message": error.get("message", "The engine refused the request."),
                "type": "invalid_request_error",
                "code": error.get("code", "invalid_request"),
            }
        },
        status_code=400 if status < 500 else 502,
    )


class GatewayController(Controller):
    """Inference on an instance with its ``auxk_`` key (or a scoped key granted to it)."""

    path = "/v1"
    tags = ["inference"]

    @post("/{instance_id:str}/chat", operation_id="chatNative", status_code=200, responses=COMMON_ERRORS)
    async def native(self, request: Request[Any, Any, Any], instance_id: FromPath[str], body: RawBody) -> Any:
        """``{"message": …}`` -> ``{"success": true, "data": {message, model, usage, response_time_ms}}``."""
        call = await _opened(request, instance_id)
        try:
            parsed = msgspec.json.decode(body or b"null", type=NativeChat)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidRequest(f"Invalid request: {exc}.") from None
        messages = ([{"role": "system", "content": parsed.system}] if parsed.system else []) + [
            {"role": "user", "content": parsed.message}
        ]
        upstream = {
            "model": call.model,
            "messages": messages,
            "max_tokens": parsed.max_tokens,
            "temperature": parsed.temperature,
        }
        status, answer = await request.app.state.forwarder.complete(
            call.dep_id, {k: v for k, v in upstream.items() if v is not None}
        )
        if status != 200:
            return _upstream_error(status, answer)
        usage = answer.get("usage") or {}
        await _finish(request, call, usage)
        data = {
            "message": answer["choices"][0]["message"].get("content") or "",
            "model": call.model,
            "usage": usage,
            "response_time_ms": round((time.perf_counter() - call.started) * 1000),
        }
        return {"success": True, "data": data}

    @post(
        "/{instance_id:str}/v1/chat/completions",
        operation_id="chatCompletionsOnInstance",
        status_code=200,
        responses=COMMON_ERRORS,
    )
    async def openai_on_instance(
        self, request: Request[Any, Any, Any], instance_id: FromPath[str], body: RawBody
    ) -> Any:
        """OpenAI ``chat.completion`` (or its stream); the request's ``model`` is echoed, not used."""
        call = await _opened(request, instance_id)
        return await _openai(request, call, _json_body(body))

    @post("/chat/completions", operation_id="chatCompletions", status_code=200, responses=COMMON_ERRORS)
    async def openai_by_key(self, request: Request[Any, Any, Any], body: RawBody) -> Any:
        """OpenAI chat on the instance the ``auxk_`` key belongs to."""
        principal = await anyio.to_thread.run_sync(
            lambda: request.app.state.key_cache.lookup(_secret(request))
        )
        if principal is None or principal.deployment_uuid is None:
            from modelyard.api.errors import InvalidApiKey

            raise InvalidApiKey("This route takes an instance's auxk_ key.")
        instance_id = ids.instance_ref(uuid.UUID(hex=principal.deployment_uuid))
        call = await _opened(request, instance_id)
        return await _openai(request, call, _json_body(body))


def _secret(request: Request[Any, Any, Any]) -> str:
    return bearer(request)


async def _openai(request: Request[Any, Any, Any], call: _Call, body: dict[str, Any]) -> Any:
    echoed = body.get("model") or call.model
    forwarder: Forwarder = request.app.state.forwarder
    upstream = {**body, "model": call.model}
    if not body.get("stream"):
        status, answer = await forwarder.complete(call.dep_id, upstream)
        if status != 200:
            return _upstream_error(status, answer)
        await _finish(request, call, answer.get("usage") or {})
        return {**answer, "model": echoed}
    wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    upstream["stream_options"] = {"include_usage": True}
    relayed = _relay_stream(request, call, upstream, echoed=echoed, wants_usage=wants_usage)
    return Stream(relayed, media_type="text/event-stream")


async def _relay_stream(
    request: Request[Any, Any, Any], call: _Call, upstream: dict[str, Any], *, echoed: str, wants_usage: bool
) -> AsyncIterator[bytes]:
    forwarder: Forwarder = request.app.state.forwarder
    usage: dict[str, Any] = {}
    async for line in forwarder.stream(call.dep_id, upstream):
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            usage = chunk["usage"]
            if not wants_usage:
                continue
        chunk["model"] = echoed
        yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"
    await _finish(request, call, usage, streamed=True)
