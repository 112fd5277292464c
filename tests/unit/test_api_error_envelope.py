"""Every error the edge produces is the documented envelope, never a bare 500."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import pytest
from litestar import post
from litestar.params import JSONBody
from litestar.testing import TestClient

import modelyard.api
from modelyard.api.errors import STATUS_OF, RateLimitExceeded
from modelyard.cli.compose import build_api, opened_core
from modelyard.domain.shared import errors
from modelyard.settings import load_settings


class Body(msgspec.Struct, forbid_unknown_fields=True):
    capacity: int


@post("/echo", sync_to_thread=False)
def echo(data: JSONBody[Body]) -> Body:
    return data


@post("/limited", sync_to_thread=False)
def limited() -> None:
    raise RateLimitExceeded("Over 1000 requests/min.", headers={"Retry-After": "7"})


@post("/broken", sync_to_thread=False)
def broken() -> None:
    raise RuntimeError("boom")


@contextmanager
def _client(data_dir: Path) -> Iterator[TestClient]:  # type: ignore[type-arg]
    with opened_core(load_settings({"MODELYARD_DATA_DIR": str(data_dir)})) as core:
        app = build_api(core)
        for handler in (echo, limited, broken):
            app.register(handler)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client


def _error(response) -> dict[str, str]:  # type: ignore[no-untyped-def]
    body = response.json()
    assert body["success"] is False
    assert set(body["error"]) == {"code", "message", "docs"}
    assert body["error"]["docs"].endswith(body["error"]["code"])
    return body["error"]


def test_unknown_route_is_not_found_in_the_envelope(tmp_path: Path) -> None:
    with _client(tmp_path) as client:
        response = client.get("/nope")
    assert response.status_code == 404
    assert _error(response)["code"] == "NOT_FOUND"


def test_wrong_method_is_405_in_the_envelope(tmp_path: Path) -> None:
    with _client(tmp_path) as client:
        response = client.delete("/health")
    assert response.status_code == 405
    assert _error(response)["code"] == "METHOD_NOT_ALLOWED"


def test_malformed_json_and_wrong_types_are_invalid_request(tmp_path: Path) -> None:
    with _client(tmp_path) as client:
        broken_json = client.post("/echo", content=b"{not json", headers={"content-type": "application/json"})
        wrong_type = client.post("/echo", json={"capacity": "four"})
        unknown = client.post("/echo", json={"capacity": 1, "billing": "monthly"})
    for response in (broken_json, wrong_type, unknown):
        assert response.status_code == 400, response.text
        assert _error(response)["code"] == "INVALID_REQUEST"


def test_api_errors_keep_their_status_code_and_headers(tmp_path: Path) -> None:
    with _client(tmp_path) as client:
        response = client.post("/limited")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert _error(response)["code"] == "RATE_LIMIT_EXCEEDED"


def test_an_unexpected_failure_is_still_the_envelope(tmp_path: Path) -> None:
    with _client(tmp_path) as client:
        response = client.post("/broken")
    assert response.status_code == 500
    assert _error(response)["code"] == "INTERNAL_ERROR"


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_an_unexpected_failure_is_logged_with_its_traceback(tmp_path: Path) -> None:
    # On the module's own logger: the app's logging setup replaces the root's handlers.
    kept = _Kept()
    logger = logging.getLogger("modelyard.api.errors")
    logger.addHandler(kept)
    try:
        with _client(tmp_path) as client:
            client.post("/broken")
    finally:
        logger.removeHandler(kept)
    assert len(kept.records) == 1
    exc_info = kept.records[0].exc_info
    assert exc_info is not None
    assert "RuntimeError: boom" in logging.Formatter().formatException(exc_info)
    assert "Traceback" in logging.Formatter().formatException(exc_info)


# The documented code and HTTP status of every named error (FEATURES E5, C1, C5, D1, D4, A10).
DOCUMENTED = {
    "INVALID_REQUEST": 400,
    "INVALID_CAPACITY": 400,
    "INVALID_MODEL": 400,
    "INVALID_BILLING_MODE": 400,
    "INVALID_AMOUNT": 400,
    "API_KEY_REQUIRED": 401,
    "INVALID_API_KEY": 401,
    "INSUFFICIENT_CREDITS": 402,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "MODEL_NOT_FOUND": 404,
    "ACCOUNT_NOT_FOUND": 404,
    "INSTANCE_NOT_FOUND": 404,
    "KEY_NOT_FOUND": 404,
    "WEBHOOK_NOT_FOUND": 404,
    "CONFLICT": 409,
    "IDEMPOTENCY_CONFLICT": 409,
    "INSTANCE_NOT_RUNNING": 409,
    "ILLEGAL_TRANSITION": 409,
    "DUPLICATE_MINUTE": 409,
    "RATE_LIMIT_EXCEEDED": 429,
    "PROVISIONING_FAILED": 502,
}


def _named_errors() -> set[type[errors.ModelyardError]]:
    # Import every API module so that the edge's own errors are all defined.
    for module in pkgutil.walk_packages(modelyard.api.__path__, "modelyard.api."):
        importlib.import_module(module.name)
    found: set[type[errors.ModelyardError]] = set()
    todo = [errors.ModelyardError]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.add(sub)
            todo.append(sub)
    return found


def test_every_named_error_has_a_status_in_the_one_table() -> None:
    named = _named_errors()
    missing = sorted(cls.__name__ for cls in named if cls.code not in STATUS_OF)
    assert missing == []
    assert {"IDEMPOTENCY_CONFLICT", "API_KEY_REQUIRED", "ILLEGAL_TRANSITION"} <= {cls.code for cls in named}


def test_every_documented_code_keeps_its_status() -> None:
    assert {code: STATUS_OF[code] for code in DOCUMENTED} == DOCUMENTED


@pytest.mark.parametrize("error", sorted(_named_errors(), key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_a_named_error_renders_at_its_status(tmp_path: Path, error: type[errors.ModelyardError]) -> None:
    @post("/refuse", sync_to_thread=False)
    def refuse() -> None:
        raise error("refused for a reason")

    with opened_core(load_settings({"MODELYARD_DATA_DIR": str(tmp_path)})) as core:
        app = build_api(core)
        app.register(refuse)
        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.post("/refuse")
    assert response.status_code == STATUS_OF[error.code]
    assert _error(response) == {
        "code": error.code,
        "message": "refused for a reason",
        "docs": "https://modelyard.dev/docs/errors#" + error.code,
    }
