"""Every error the edge produces is the documented envelope, never a bare 500."""

from __future__ import annotations

from pathlib import Path

import msgspec
from litestar import post
from litestar.params import JSONBody
from litestar.testing import TestClient

from modelyard.api.app import create_app
from modelyard.api.errors import RateLimitExceeded
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


def _client(data_dir: Path) -> TestClient:  # type: ignore[type-arg]
    app = create_app(load_settings({"MODELYARD_DATA_DIR": str(data_dir)}))
    for handler in (echo, limited, broken):
        app.register(handler)
    return TestClient(app, raise_server_exceptions=False)


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
