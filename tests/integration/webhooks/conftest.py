"""A real webhook receiver on loopback, and one API process with its views and dispatcher.

The receiver is an HTTP server that records every request (headers and body bytes) and
answers from a script (``answers``: per ``webhook-id``, the statuses of its first tries;
200 after them), optionally slowly. The yard is the composition root's API behind
Litestar's test client, with the views worker and the webhook dispatcher running as in
``modelyard serve``; deployments' lifecycles are driven through the domain services as the
reconciler would (no replica is started).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from litestar.testing import TestClient
from standardwebhooks import Webhook

from modelyard.adapters.keygen import MANAGEMENT_PREFIX, new_secret
from modelyard.adapters.webhooks.signing import ainative_signature
from modelyard.cli.compose import Core, build_api, build_workers, opened_core, running
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.keys.aggregate import KeyKind
from modelyard.domain.keys.service import IssueKey
from modelyard.domain.shared import ids
from modelyard.settings import load_settings


@dataclass
class Received:
    """One request the receiver got."""

    headers: dict[str, str]
    body: bytes
    status: int
    path: str = ""

    @property
    def json(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found

    def verify(self, secret: str) -> dict[str, Any]:
        """Check both signatures with ``secret`` (the stock library, and the document's recipe)."""
        verified: dict[str, Any] = Webhook(secret).verify(self.body, self.headers)
        assert self.headers["x-ainative-signature"] == ainative_signature(secret, self.body)
        return verified


@dataclass
class Receiver:
    """Records every POST; answers each ``webhook-id``'s first tries from ``answers``."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    answers: dict[str, list[int]] = field(default_factory=dict)
    # Answer every try of these event types with this status (until changed).
    status_of_type: dict[str, int] = field(default_factory=dict)
    # Answer every try to these paths with this status (until changed).
    status_of_path: dict[str, int] = field(default_factory=dict)
    default_status: int = 200
    delay_s: float = 0.0
    # Answer requests to these paths only after so many seconds.
    path_delay_s: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # The client ports of the requests being answered now (what is in flight).
    in_flight: set[int] = field(default_factory=set)

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            scripted = self.answers.get(headers.get("webhook-id", ""))
            kind = json.loads(body).get("type", "")
            if scripted:
                status = scripted.pop(0)
            elif path in self.status_of_path:
                status = self.status_of_path[path]
            else:
                status = self.status_of_type.get(kind, self.default_status)
            self.received.append(Received(headers=headers, body=body, status=status, path=path))
        return status

    def delivered(self) -> list[Received]:
        """The requests answered 2xx, in arrival order."""
        with self.lock:
            return [r for r in self.received if 200 <= r.status < 300]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """Until ``count`` requests were answered 2xx."""
        deadline = time.monotonic() + timeout
        while len(self.delivered()) < count:
            assert time.monotonic() < deadline, f"only {len(self.delivered())} of {count} delivered"
            time.sleep(0.02)
        return self.delivered()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver listening on a free loopback port."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            port = int(self.client_address[1])
            with state.lock:
                state.in_flight.add(port)
            try:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status = state.answer(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                delay = state.path_delay_s.get(self.path, state.delay_s)
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender gave up waiting (its timeout): what a slow receiver sees
            finally:
                with state.lock:
                    state.in_flight.discard(port)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    yield state
    server.shutdown()
    server.server_close()


@dataclass
class Yard:
    """The API under test, what it runs over, and a management key of a funded account."""

    client: TestClient[Any]
    core: Core
    account: UUID
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def provision(self) -> UUID:
        answer = self.client.post("/v1/provision", json={"model": "smollm2-135m"}, headers=self.auth)
        assert answer.status_code == 201, answer.text
        return ids.parse_deployment_id(answer.json()["data"]["instance"]["id"])


YardFactory = Callable[..., Yard]
# Fast retries for tests: four tries 50, 100, 200 ms apart.
FAST_RETRIES = "0.05,0.1,0.2"


@pytest.fixture
def make_yard(tmp_path: Path) -> Iterator[YardFactory]:
    """Builds the yard with settings of the test's choosing (once per test)."""
    with ExitStack() as stack:

        def make(**env: str) -> Yard:
            settings = load_settings(
                {
                    "MODELYARD_DATA_DIR": str(tmp_path / "data"),
                    "MODELYARD_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
                    "MODELYARD_WEBHOOK_RETRY_SCHEDULE": FAST_RETRIES,
                    "MODELYARD_WEBHOOK_TIMEOUT_S": "2",
                    **env,
                }
            )
            core = stack.enter_context(opened_core(settings))
            stack.enter_context(running(build_workers(core, ["views", "webhooks"])))
            now = datetime.now(UTC)
            services = core.services
            account = services.accounts.open_account(OpenAccount(name="hooks", plan="free", at=now)).id
            services.accounts.add_credits(AddCredits(account_id=account, amount=5_000_000, at=now))
            secret, digest, display = new_secret(MANAGEMENT_PREFIX)
            services.keys.issue(
                IssueKey(
                    account_id=account, kind=KeyKind.MANAGEMENT, secret_hash=digest, display=display, at=now
                )
            )
            client = stack.enter_context(TestClient(build_api(core)))
            yard = Yard(client=client, core=core, account=account, key=secret)
            deadline = time.monotonic() + 10
            while client.get("/v1/balance", headers=yard.auth).status_code == 401:
                assert time.monotonic() < deadline, "the key never reached the views"
                time.sleep(0.05)
            return yard

        yield make


@pytest.fixture
def yard(make_yard: YardFactory) -> Yard:
    """The yard with the test defaults (loopback allowed, fast retries)."""
    return make_yard()
