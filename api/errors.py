"""One error envelope for the whole API, rendered by one handler from one table.

Every error reaches the client as ``{"success": false, "error": {"code", "message", "docs"}}``.
Every named refusal, the domain's and the edge's own below (keys, rate limits, malformed
requests), is a ``ModelyardError`` with a stable code; ``STATUS_OF`` is the one place a code
becomes an HTTP status. Whatever Litestar raises for a malformed request or an unknown
route is mapped here too, so nothing a client sends can produce a bare 500.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

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
    "NOT_FOUND": 404,
    "MODEL_NOT_FOUND": 404,
    "ACCOUNT_NOT_FOUND": 404,
    "INSTANCE_NOT_FOUND": 404,
    "KEY_NOT_FOUND": 404,
    "WEBHOOK_NOT_FOUND": 404,
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
}
# The codes Litestar's own HTTP errors get, by status; any other status is a 400 or a 500.
_CODE_OF_HTTP: dict[int, str] = {
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """The ``error`` object of the envelope."""

    code: str
    message: str
    docs: str


class ErrorEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    """What every failed request answers."""

    success: bool
    error: ErrorBody


class EdgeError(ModelyardError):
    """A refusal of the HTTP edge itself; it may ask for response headers (``Retry-After``)."""

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers or {}


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


class RouteNotFound(EdgeError):
    """No route answers this path."""

    code = "NOT_FOUND"


def error_response(error: ModelyardError) -> Response[Any]:
    """The envelope for one named error, at the status ``STATUS_OF`` gives its code."""
    headers = error.headers if isinstance(error, EdgeError) else None
    return _envelope(error.code, STATUS_OF[error.code], error.message, headers)


def _envelope(code: str, status: int, message: str, headers: dict[str, str] | None = None) -> Response[Any]:
    body = ErrorEnvelope(success=False, error=ErrorBody(code=code, message=message, docs=DOCS_BASE + code))
    return Response(content=body, status_code=status, headers=headers or {})


def handle_exception(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Render any exception as the envelope; the one place errors become HTTP.

    An exception nobody named is logged with its traceback and answered 500; so is a named
    error whose code is missing from ``STATUS_OF`` (a test keeps that from shipping).
    """
    if isinstance(exc, ModelyardError) and exc.code in STATUS_OF:
        return error_response(exc)
    if isinstance(exc, ValidationException):
        return _envelope("INVALID_REQUEST", 400, _validation_message(exc))
    if isinstance(exc, NotFoundException):
        return _envelope("NOT_FOUND", 404, "No such route.")
    if isinstance(exc, HTTPException):
        return _envelope(_http_code(exc.status_code), exc.status_code, str(exc.detail))
    log.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
    return _envelope("INTERNAL_ERROR", 500, "The server failed to answer; the error is logged.")


def _validation_message(exc: ValidationException) -> str:
    extra = exc.extra
    if isinstance(extra, list) and extra:
        first = extra[0]
        if isinstance(first, dict):
            where = first.get("key") or first.get("source") or "body"
            return f"Invalid request: {first.get('message', exc.detail)} ({where})."
    return f"Invalid request: {exc.detail}."


def _http_code(status: int) -> str:
    return _CODE_OF_HTTP.get(status, "INVALID_REQUEST" if status < 500 else "INTERNAL_ERROR")


def documented(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI responses for the envelope at these statuses (handlers' ``responses=``)."""
    return {
        status: ResponseSpec(data_container=ErrorEnvelope, description="Error: branch on error.code")
        for status in statuses
    }


# What every authenticated route can answer besides success.
COMMON_ERRORS = documented(400, 401, 402, 403, 404, 409, 429, 502)
