"""One error table for the whole API, and one error shape per route family, rendered by one handler.

The first dialect's routes (management, ``/v1/{id}/chat``, everything else) answer
``{"success": false, "error": {"code", "message", "docs"}}``; the OpenAI-compatible routes
(those whose handler says ``opt={"errors": "openai"}``) answer OpenAI's
``{"error": {"message", "type", "code", "param"}}``, so OpenAI clients read them as they
read OpenAI's. Every named refusal, the domain's and the edge's own below (keys, rate
limits, malformed requests), is a ``ModelyardError`` with a stable code; ``STATUS_OF`` is
the one place a code becomes an HTTP status. Whatever Litestar raises for a malformed
request or an unknown route is mapped here too, so nothing a client sends can produce a
bare 500, and no answer carries an exception's text or an internal address: the detail
goes to the log.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import Scope

from modelyard.domain.shared.errors import ModelyardError

DOCS_BASE = "https://modelyard.dev/docs/errors#"
log = logging.getLogger(__name__)

# Every documented code and its HTTP status (FEATURES E5 and the first document's table).
STATUS_OF: dict[str, int] = {
    "INVALID_REQUEST": 400,
    "INVALID_CAPACITY": 400,
    "INVALID_MODEL": 400,
    "INVALID_BILLING_MODE": 400,
    "INVALID_AMOUNT": 400,
    "API_KEY_REQUIRED": 401,
    "INVALID_API_KEY": 401,
    "INSUFFICIENT_CREDITS": 402,
    "FORBIDDEN": 403,
    # Not in either document: a plan's limit on live deployments or replicas. Waiting does
    # not help (a 429 would say it does); destroying an instance or a bigger plan does.
    "QUOTA_EXCEEDED": 403,
    # A model above the account's plan (GET /api/v1/public/models/available lists its own).
    "PLAN_UPGRADE_REQUIRED": 403,
    "NOT_FOUND": 404,
    "MODEL_NOT_FOUND": 404,
    "ACCOUNT_NOT_FOUND": 404,
    "INSTANCE_NOT_FOUND": 404,
    "KEY_NOT_FOUND": 404,
    "WEBHOOK_NOT_FOUND": 404,
    "ORG_NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "CONFLICT": 409,
    "IDEMPOTENCY_CONFLICT": 409,
    "INSTANCE_NOT_RUNNING": 409,
    "ILLEGAL_TRANSITION": 409,
    "DUPLICATE_MINUTE": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "RATE_LIMIT_EXCEEDED": 429,
    "INTERNAL_ERROR": 500,
    "PROVISIONING_FAILED": 502,
    "ENGINE_ERROR": 502,
    # Not in either document: a request to a deployment scaled to zero was held for its cold
    # start as long as the server allows and it is not serving yet; retry after Retry-After.
    "INSTANCE_STARTING": 503,
    # Not in either document: every replica's queue is full; Retry-After says when to come back.
    "ENGINE_BUSY": 503,
}
# The codes Litestar's own HTTP errors get, by status; any other status is a 400 or a 500.
_CODE_OF_HTTP: dict[int, str] = {
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}
# What a handler's ``opt`` says to answer errors in OpenAI's shape.
OPENAI_ERRORS = {"errors": "openai"}
# What a handler's ``opt`` says to answer errors in Anthropic's shape.
ANTHROPIC_ERRORS = {"errors": "anthropic"}
# Anthropic's error ``type`` by status (its API's own); any other status below 500 is an
# ``invalid_request_error``, and 500 and above an ``api_error``.
_ANTHROPIC_TYPE_OF: dict[int, str] = {
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
}
# OpenAI's error ``type`` by status (what its own API answers); any other status below 500
# is an ``invalid_request_error``.
_OPENAI_TYPE_OF: dict[int, str] = {402: "insufficient_quota", 429: "requests"}
# Paths under the OpenAI and Anthropic base URLs (an instance's ``/v1/{id}/v1``, the by-key
# ``/v1`` chat, the routed chat), for requests that reached no handler.
_ANTHROPIC_PATHS = re.compile(r"^(/v1/[^/]+)?/v1/messages(/|$)")
_OPENAI_PATHS = re.compile(r"^(/v1/[^/]+/v1/|/v1/chat/completions/?$|/api/v1/public/chat/completions/?$)")
# A message echoes at most this much: a refusal may quote what the client sent.
MAX_MESSAGE = 500


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """The ``error`` object of the envelope."""

    code: str
    message: str
    docs: str


class ErrorEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    """What every failed request answers."""

    success: bool
    error: ErrorBody


class OpenAIErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """The ``error`` object of OpenAI's error shape; ``code`` is the same stable code."""

    message: str
    type: str
    code: str
    param: str | None


class OpenAIError(msgspec.Struct, frozen=True, kw_only=True):
    """What the OpenAI-compatible routes answer when they fail."""

    error: OpenAIErrorBody


class AnthropicErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """The ``error`` object of Anthropic's error shape, with the same stable ``code``."""

    type: str
    message: str
    code: str


class AnthropicError(msgspec.Struct, frozen=True, kw_only=True):
    """What the Anthropic-compatible routes answer when they fail."""

    type: str
    error: AnthropicErrorBody


class EdgeError(ModelyardError):
    """A refusal of the HTTP edge itself; it may ask for response headers (``Retry-After``)
    and name the request field it is about (``param``)."""

    def __init__(
        self, message: str, *, headers: dict[str, str] | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.headers = headers or {}
        self.param = param


class InvalidBody(EdgeError):
    """The body is not what the route takes: not JSON, nested too deep, a wrong or unknown field."""

    code = "INVALID_REQUEST"


class EngineError(EdgeError):
    """The instance's engine failed on a request it accepted (its detail is logged, not shown)."""

    code = "ENGINE_ERROR"


class EngineBusy(EdgeError):
    """Every replica of the instance has a full queue (or kept the request waiting too long)."""

    code = "ENGINE_BUSY"


class ApiKeyRequired(EdgeError):
    """No key was sent."""

    code = "API_KEY_REQUIRED"


class InvalidApiKey(EdgeError):
    """The key is unknown, revoked, or of the wrong kind for the route."""

    code = "INVALID_API_KEY"


class Forbidden(EdgeError):
    """The key is valid but may not reach this deployment."""

    code = "FORBIDDEN"


class RateLimitExceeded(EdgeError):
    """Over the key's requests per minute."""

    code = "RATE_LIMIT_EXCEEDED"


class InstanceStarting(EdgeError):
    """A deployment scaled to zero is cold-starting and was not ready within the hold."""

    code = "INSTANCE_STARTING"


class RouteNotFound(EdgeError):
    """No route answers this path."""

    code = "NOT_FOUND"


def error_response(error: ModelyardError, scope: Scope | None = None) -> Response[Any]:
    """The error for one named refusal, at the status ``STATUS_OF`` gives its code, in the
    shape of the route ``scope`` reached (the envelope when there is none)."""
    edge = error if isinstance(error, EdgeError) else None
    return _render(
        scope,
        error.code,
        STATUS_OF[error.code],
        error.message,
        headers=edge.headers if edge else None,
        param=edge.param if edge else None,
    )


def _render(
    scope: Scope | None,
    code: str,
    status: int,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> Response[Any]:
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "…"
    body: ErrorEnvelope | OpenAIError | AnthropicError
    if _dialect(scope) == ANTHROPIC_ERRORS["errors"]:
        kind = "api_error" if status >= 500 else _ANTHROPIC_TYPE_OF.get(status, "invalid_request_error")
        body = AnthropicError(type="error", error=AnthropicErrorBody(type=kind, message=message, code=code))
    elif speaks_openai(scope):
        kind = "server_error" if status >= 500 else _OPENAI_TYPE_OF.get(status, "invalid_request_error")
        body = OpenAIError(error=OpenAIErrorBody(message=message, type=kind, code=code, param=param))
    else:
        body = ErrorEnvelope(
            success=False, error=ErrorBody(code=code, message=message, docs=DOCS_BASE + code)
        )
    return Response(content=body, status_code=status, headers=headers or {})


def speaks_openai(scope: Scope | None) -> bool:
    """Whether the route this request reached answers errors in OpenAI's shape."""
    return _dialect(scope) == OPENAI_ERRORS["errors"]


def _dialect(scope: Scope | None) -> str | None:
    """The error shape the route this request reached asks for (its ``opt["errors"]``); a
    request no handler took (an unknown path, a wrong method) under an OpenAI or Anthropic
    base URL gets that API's shape too, as its clients read only that one."""
    if scope is None:
        return None
    handler = scope.get("route_handler")
    if handler is not None and "errors" in handler.opt:
        return str(handler.opt["errors"])
    path = str(scope.get("path", ""))
    if _ANTHROPIC_PATHS.match(path):
        return ANTHROPIC_ERRORS["errors"]
    return OPENAI_ERRORS["errors"] if _OPENAI_PATHS.match(path) else None


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Render any exception in its route's error shape; the one place errors become HTTP.

    An exception nobody named is logged with its traceback and answered 500; so is a named
    error whose code is missing from ``STATUS_OF`` (a test keeps that from shipping). A
    server-side failure's own text is logged, never answered.
    """
    scope = request.scope
    if isinstance(exc, ModelyardError) and exc.code in STATUS_OF:
        return error_response(exc, scope)
    if isinstance(exc, ValidationException):
        message, param = _validation_message(exc)
        return _render(scope, "INVALID_REQUEST", 400, message, param=param)
    if isinstance(exc, NotFoundException):
        return _render(scope, "NOT_FOUND", 404, "No such route.")
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        return _render(scope, _http_code(exc.status_code), exc.status_code, str(exc.detail))
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    log.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
    return _render(scope, "INTERNAL_ERROR", status, "The server failed to answer; the error is logged.")


def _validation_message(exc: ValidationException) -> tuple[str, str | None]:
    """Litestar's account of a request that does not fit the route, as (message, field)."""
    extra = exc.extra
    if isinstance(extra, list) and extra and isinstance(extra[0], dict):
        first = extra[0]
        key = first.get("key") if isinstance(first.get("key"), str) else None
        where = key or first.get("source") or "body"
        return f"Invalid request: {first.get('message', exc.detail)} ({where}).", key
    return f"Invalid request: {exc.detail}.", None


def _http_code(status: int) -> str:
    return _CODE_OF_HTTP.get(status, "INVALID_REQUEST")


def documented(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI responses for the envelope at these statuses (handlers' ``responses=``)."""
    return {
        status: ResponseSpec(data_container=ErrorEnvelope, description="Error: branch on error.code")
        for status in statuses
    }


def documented_anthropic(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI responses for Anthropic's error shape at these statuses."""
    return {
        status: ResponseSpec(data_container=AnthropicError, description="Error: branch on error.code")
        for status in statuses
    }


def documented_openai(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI responses for OpenAI's error shape at these statuses."""
    return {
        status: ResponseSpec(data_container=OpenAIError, description="Error: branch on error.code")
        for status in statuses
    }


# What every authenticated route can answer besides success, in each shape.
COMMON_ERRORS = documented(400, 401, 402, 403, 404, 409, 429, 502)
COMMON_OPENAI_ERRORS = documented_openai(400, 401, 403, 404, 409, 429, 502)
