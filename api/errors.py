"""One error envelope for the whole API, rendered by one handler.

Every error reaches the client as ``{"success": false, "error": {"code", "message", "docs"}}``
with the documented HTTP status: domain errors carry their own code and status, the edge's
own errors (keys, rate limits, malformed requests) are the ``ApiError`` family below, and
whatever Litestar raises for a malformed request or an unknown route is mapped here too, so
nothing a client sends can produce a bare 500.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

DOCS_BASE = "https://modelyard.dev/docs/errors#"
log = logging.getLogger(__name__)


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """The ``error`` object of the envelope."""

    code: str
    message: str
    docs: str


class ErrorEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    """What every failed request answers."""

    success: bool
    error: ErrorBody


class ApiError(Exception):
    """An error of the HTTP edge with its documented code and status."""

    code = "INVALID_REQUEST"
    status = 400

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class ApiKeyRequired(ApiError):
    code, status = "API_KEY_REQUIRED", 401


class InvalidApiKey(ApiError):
    code, status = "INVALID_API_KEY", 401


class Forbidden(ApiError):
    code, status = "FORBIDDEN", 403


class RateLimitExceeded(ApiError):
    code, status = "RATE_LIMIT_EXCEEDED", 429


class InvalidRequest(ApiError):
    code, status = "INVALID_REQUEST", 400


class RouteNotFound(ApiError):
    code, status = "NOT_FOUND", 404


def error_response(
    code: str, status: int, message: str, headers: dict[str, str] | None = None
) -> Response[Any]:
    """The envelope for one error."""
    body = ErrorEnvelope(success=False, error=ErrorBody(code=code, message=message, docs=DOCS_BASE + code))
    return Response(content=body, status_code=status, headers=headers or {})


def handle_exception(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Render any exception as the envelope; the one place errors become HTTP."""
    code = getattr(exc, "code", None)
    status = getattr(exc, "status", None)
    if isinstance(code, str) and isinstance(status, int):
        message = getattr(exc, "message", None) or str(exc)
        return error_response(code, status, message, getattr(exc, "headers", None))
    if isinstance(exc, ValidationException):
        return error_response("INVALID_REQUEST", 400, _validation_message(exc))
    if isinstance(exc, NotFoundException):
        return error_response("NOT_FOUND", 404, "No such route.")
    if isinstance(exc, HTTPException):
        return error_response(_http_code(exc.status_code), exc.status_code, str(exc.detail))
    log.exception("unhandled error", exc_info=exc)
    return error_response("INTERNAL_ERROR", 500, "The server failed to answer; the error is logged.")


def _validation_message(exc: ValidationException) -> str:
    extra = exc.extra
    if isinstance(extra, list) and extra:
        first = extra[0]
        if isinstance(first, dict):
            where = first.get("key") or first.get("source") or "body"
            return f"Invalid request: {first.get('message', exc.detail)} ({where})."
    return f"Invalid request: {exc.detail}."


def _http_code(status: int) -> str:
    return {405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE"}.get(
        status, "INVALID_REQUEST" if status < 500 else "INTERNAL_ERROR"
    )


def documented(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI responses for the envelope at these statuses (handlers' ``responses=``)."""
    return {
        status: ResponseSpec(data_container=ErrorEnvelope, description="Error: branch on error.code")
        for status in statuses
    }


# What every authenticated route can answer besides success.
COMMON_ERRORS = documented(400, 401, 402, 403, 404, 409, 429, 502)
