"""One error shape per route family: the envelope on the first dialect's routes, OpenAI's on
the OpenAI-compatible ones; neither carries a server-side failure's own text."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from litestar import post
from litestar.exceptions import InternalServerException
from litestar.testing import TestClient

from modelyard.api.errors import MAX_MESSAGE, OPENAI_ERRORS, InvalidBody, RateLimitExceeded
from modelyard.cli.compose import build_api, opened_core
from modelyard.settings import load_settings


def _refuse() -> None:
    raise InvalidBody("Expected `float`, got `str` (at temperature).", param="temperature")


def _limited() -> None:
    raise RateLimitExceeded("Over the limit.", headers={"Retry-After": "3"})


def _failed() -> None:
    raise InternalServerException("connect to 127.0.0.1:41234 failed: ConnectionRefusedError(111)")


def _long() -> None:
    raise InvalidBody("x" * 10_000)


HANDLERS = [
    post(f"/{family}/{name}", sync_to_thread=False, opt=opt)(fn)
    for family, opt in (("native", {}), ("openai", OPENAI_ERRORS))
    for name, fn in (("refuse", _refuse), ("limited", _limited), ("failed", _failed), ("long", _long))
]


@contextmanager
def _client(data_dir: Path) -> Iterator[TestClient]:  # type: ignore[type-arg]
    with opened_core(load_settings({"MODELYARD_DATA_DIR": str(data_dir)})) as core:
        app = build_api(core)
        for handler in HANDLERS:
            app.register(handler)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client


def test_the_first_dialect_answers_the_envelope(tmp_path: Path) -> None:
    with _client(tmp_path) as client:
        refused = client.post("/native/refuse")
        limited = client.post("/native/limited")
    assert refused.status_code == 400
    assert refused.json() == {
        "success": False,
        "error": {
            "code": "INVALID_REQUEST",
            "message": "Expected `float`, got `str` (at temperature).",
            "docs": "https://modelyard.dev/docs/errors#INVALID_REQUEST",
        },
    }
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "3"
    assert limited.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"


def test_the_openai_routes_answer_openais_shape_with_the_same_codes(tmp_path: Path) -> None:
    with _client(tmp_path) as client:
        refused = client.post("/openai/refuse")
        limited = client.post("/openai/limited")
    assert refused.status_code == 400
    assert refused.json() == {
        "error": {
            "message": "Expected `float`, got `str` (at temperature).",
            "type": "invalid_request_error",
            "code": "INVALID_REQUEST",
            "param": "temperature",
        }
    }
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "3"
    assert limited.json()["error"] == {
        "message": "Over the limit.",
        "type": "requests",
        "code": "RATE_LIMIT_EXCEEDED",
        "param": None,
    }


@pytest.mark.parametrize("family", ["native", "openai"])
def test_a_server_failure_shows_no_address_or_exception_text(tmp_path: Path, family: str) -> None:
    with _client(tmp_path) as client:
        failed = client.post(f"/{family}/failed")
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "INTERNAL_ERROR"
    assert "127.0.0.1" not in failed.text
    assert "Error(" not in failed.text


@pytest.mark.parametrize("family", ["native", "openai"])
def test_a_message_quoting_the_client_is_cut_short(tmp_path: Path, family: str) -> None:
    with _client(tmp_path) as client:
        answer = client.post(f"/{family}/long")
    assert answer.status_code == 400
    assert len(answer.json()["error"]["message"]) == MAX_MESSAGE + 1


def test_the_rate_limiters_refusal_takes_the_shape_of_the_route_it_stopped(tmp_path: Path) -> None:
    settings = load_settings({"MODELYARD_DATA_DIR": str(tmp_path), "MODELYARD_RATE_LIMIT_RPM": "1"})
    with opened_core(settings) as core, TestClient(build_api(core), raise_server_exceptions=False) as client:
        key = {"Authorization": "Bearer auxk_nobody"}
        client.post("/v1/chat/completions", json={}, headers=key)
        openai_route = client.post("/v1/chat/completions", json={}, headers=key)
        native_route = client.post("/v1/provision", json={}, headers=key)
    assert openai_route.status_code == native_route.status_code == 429
    assert openai_route.json()["error"]["type"] == "requests"
    assert native_route.json()["success"] is False
    codes = {openai_route.json()["error"]["code"], native_route.json()["error"]["code"]}
    assert codes == {"RATE_LIMIT_EXCEEDED"}


@pytest.mark.parametrize(
    ("method", "path", "status", "dialect"),
    [
        ("GET", "/v1/inst_0123456789abcdef0123456789abcdef/v1/chat/completions", 405, "openai"),
        ("POST", "/v1/inst_0123456789abcdef0123456789abcdef/v1/nothing", 404, "openai"),
        ("GET", "/v1/chat/completions", 405, "openai"),
        ("GET", "/api/v1/public/chat/completions", 405, "openai"),
        ("POST", "/api/v1/public/chat/completions", 401, "openai"),
        ("GET", "/v1/messages", 405, "anthropic"),
        ("POST", "/v1/inst_0123456789abcdef0123456789abcdef/v1/messages", 401, "anthropic"),
        ("GET", "/v1/nothing", 404, "envelope"),
    ],
)
def test_requests_under_an_api_base_url_are_refused_in_that_apis_shape(
    tmp_path: Path, method: str, path: str, status: int, dialect: str
) -> None:
    with _client(tmp_path) as client:
        answer = client.request(method, path, headers={"Authorization": "Bearer auxk_unknown"}, content=b"{}")
    assert answer.status_code == status
    body = answer.json()
    if dialect == "openai":
        assert set(body["error"]) == {"message", "type", "code", "param"}
    elif dialect == "anthropic":
        assert body["type"] == "error"
        assert set(body["error"]) == {"type", "message", "code"}
    else:
        assert body["success"] is False
