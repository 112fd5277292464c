"""The access line: one per request, with method, path, status, duration and request id, never a key."""

from __future__ import annotations

import logging
import re

import pytest
from litestar import Litestar, get
from litestar.testing import TestClient

from modelyard.api.access_log import AccessLog, flush_lines
from modelyard.api.errors import handle_exception

LINE = re.compile(r"(?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d{3}) (?P<ms>\d+\.\d)ms id=(?P<id>\S+)")


@get("/ok", sync_to_thread=False)
def ok() -> dict[str, str]:
    return {"status": "ok"}


@get("/boom", sync_to_thread=False)
def boom() -> None:
    raise RuntimeError("the database went away")


def _app() -> Litestar:
    return Litestar(
        route_handlers=[ok, boom],
        middleware=[AccessLog],
        exception_handlers={Exception: handle_exception},
        logging_config=None,
    )


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[re.Match[str]]:
    flush_lines()  # lines are handed to logging in batches; the test's loop is gone by now
    lines = [r.getMessage() for r in caplog.records if r.name == "modelyard.access"]
    matches = [LINE.fullmatch(line) for line in lines]
    assert all(matches), lines
    return [m for m in matches if m]


def test_one_line_per_request_with_the_callers_id_returned(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with TestClient(_app()) as client:
        answer = client.get("/ok?token=auxen_live_secret", headers={"X-Request-ID": "trace-42"})
        second = client.get("/ok", headers={"Authorization": "Bearer auxen_live_secret"})
    assert answer.headers["x-request-id"] == "trace-42"
    made_up = second.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made_up)
    lines = _access_lines(caplog)
    assert [(m["method"], m["path"], m["status"], m["id"]) for m in lines] == [
        ("GET", "/ok", "200", "trace-42"),
        ("GET", "/ok", "200", made_up),
    ]
    # httpx's records are the test client's own, not the server's.
    server = [r.getMessage() for r in caplog.records if not r.name.startswith("httpx")]
    assert server
    assert not [line for line in server if "auxen_live_secret" in line]


def test_an_id_that_is_not_plain_is_replaced(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    forged = "x 200 0.1ms id=forged"
    with TestClient(_app()) as client:
        answer = client.get("/ok", headers={"X-Request-ID": forged})
    assert answer.headers["x-request-id"] != forged
    assert [m["id"] for m in _access_lines(caplog)] == [answer.headers["x-request-id"]]


def test_a_failure_is_logged_with_its_traceback_and_its_500_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with TestClient(_app()) as client:
        answer = client.get("/boom")
    assert answer.status_code == 500
    assert [(m["path"], m["status"]) for m in _access_lines(caplog)] == [("/boom", "500")]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors
    assert errors[0].exc_info is not None
    assert "the database went away" in str(errors[0].exc_info[1])


def test_no_line_below_the_configured_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with TestClient(_app()) as client:
        assert client.get("/ok").headers["x-request-id"]
    assert not [r for r in caplog.records if r.name == "modelyard.access"]
