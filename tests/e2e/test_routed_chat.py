"""Routed chat (``POST /api/v1/public/chat/completions``) with the official ``openai`` SDK:
by model to the caller's deployment, and along an account's upstreams with fallback: a
rate-limited upstream and a dead one are passed over, and a real OpenAI-compatible server on
loopback (the account's own instance, through its OpenAI route) answers. Every attempt is
recorded as usage with its target."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import openai
import pytest

from modelyard.adapters.engines.base import ReplicaSpec
from modelyard.adapters.eventstore.env import store_env
from modelyard.adapters.placement.local import LocalPlacement
from modelyard.domain.shared.store import Store
from modelyard.domain.usage.events import UsageRecorded
from modelyard.settings import load_settings

from .conftest import Yard, free_port
from .test_openai_conformance import _running

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ASK = [{"role": "user", "content": "Say hello."}]


class _RateLimited(BaseHTTPRequestHandler):
    """An OpenAI-compatible server that is always over its rate limit."""

    hits = 0

    def do_POST(self) -> None:
        type(self).hits += 1
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b'{"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}'
        self.send_response(429)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture
def rate_limited() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RateLimited)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _usage(yard: Yard) -> list[UsageRecorded]:
    store = Store(env=store_env(load_settings(yard.env)))
    try:
        return [
            event
            for note in store.recorder.select_notifications(start=1, limit=100_000)
            if isinstance(event := store.mapper.to_domain_event(note), UsageRecorded)
        ]
    finally:
        store.close()


def test_routed_chat_goes_to_the_deployment_or_falls_back_along_the_upstreams(
    embedded: Yard, rate_limited: str
) -> None:
    instance = _running(embedded)
    manage = httpx.Client(
        base_url=f"{embedded.urls[0]}/api/v1/public", headers={"Authorization": f"Bearer {embedded.key}"}
    )
    sdk = openai.OpenAI(base_url=f"{embedded.urls[0]}/api/v1/public", api_key=embedded.key, max_retries=0)

    # By model, to the caller's own deployment.
    direct = sdk.chat.completions.with_raw_response.create(model="smollm2-135m", messages=ASK, max_tokens=4)  # type: ignore[arg-type]
    assert direct.headers["x-route-target"].startswith("deployment:dep_")
    assert direct.parse().choices[0].message.content
    assert direct.parse().model == "smollm2-135m"

    # No route: a clear 404 in OpenAI's shape.
    with pytest.raises(openai.NotFoundError) as unrouted:
        sdk.chat.completions.create(model="routed-smol", messages=ASK, max_tokens=4)  # type: ignore[arg-type]
    assert unrouted.value.code == "MODEL_NOT_FOUND"

    # A route of three upstreams: over its limit, down, and a real OpenAI-compatible server.
    dead = f"http://127.0.0.1:{free_port()}/v1"
    live = {"base_url": str(instance["openai_base_url"]), "api_key": str(instance["api_key"])}
    for name, provider in (
        ("limited", {"base_url": rate_limited, "api_key": "sk-limited-secret"}),
        ("dead", {"base_url": dead, "api_key": "sk-dead-secret"}),
        (
            "loopback",
            live | {"input_price_micros_per_mtok": 100_000, "output_price_micros_per_mtok": 400_000},
        ),
    ):
        added = manage.put(f"/providers/{name}", json=provider | {"models": ["routed-smol"]})
        assert added.status_code == 200, added.text
        assert "secret" not in added.text
    listed = manage.get("/providers").json()["providers"]
    assert [p["name"] for p in listed] == ["limited", "dead", "loopback"]
    assert all("secret" not in p["api_key"] for p in listed)
    time.sleep(1.1)  # the route cache's second

    routed = sdk.chat.completions.with_raw_response.create(model="routed-smol", messages=ASK, max_tokens=4)  # type: ignore[arg-type]
    assert routed.headers["x-route-target"] == "upstream:loopback"
    answer = routed.parse()
    assert answer.model == "routed-smol"
    assert answer.choices[0].message.content
    assert _RateLimited.hits == 1

    with sdk.chat.completions.with_streaming_response.create(
        model="routed-smol",
        messages=ASK,
        max_tokens=4,
        stream=True,  # type: ignore[arg-type]
    ) as streamed:
        assert streamed.headers["x-route-target"] == "upstream:loopback"
        assert streamed.headers["content-type"].startswith("text/event-stream")
        text = "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
    assert text
    assert _RateLimited.hits == 2

    # Every attempt is recorded, with its target; the upstream's answer with its cost.
    deadline = time.monotonic() + 10
    while len(records := [r for r in _usage(embedded) if r.route]) < 7 and time.monotonic() < deadline:
        time.sleep(0.2)
    by_target = [(r.route, r.status) for r in records]
    assert by_target.count(("upstream:limited", 429)) == 2
    assert by_target.count(("upstream:dead", 502)) == 2
    assert by_target.count(("upstream:loopback", 200)) == 2
    assert [r.status for r in records if (r.route or "").startswith("deployment:")] == [200]
    served = [r for r in records if r.route == "upstream:loopback"]
    for record in served:
        assert record.completion_tokens > 0
        expected = -(-(record.prompt_tokens * 100_000 + record.completion_tokens * 400_000) // 1_000_000)
        assert record.cost_micros == expected > 0

    # When every target fails, a 502 that names each failure (never a key or an address).
    assert manage.delete("/providers/loopback").status_code == 200
    time.sleep(1.1)
    with pytest.raises(openai.APIStatusError) as exhausted:
        sdk.chat.completions.create(model="routed-smol", messages=ASK, max_tokens=4)  # type: ignore[arg-type]
    assert exhausted.value.status_code == 502
    assert "upstream:limited answered 429" in exhausted.value.message
    assert "upstream:dead unreachable" in exhausted.value.message
    assert "secret" not in exhausted.value.message
    assert "127.0.0.1" not in exhausted.value.message
    logs = "".join(p.read_text(errors="replace") for p in embedded.cwd.glob("*.log"))
    assert "sk-dead-secret" not in logs
    assert "sk-limited-secret" not in logs


def test_the_operators_upstreams_route_every_account(tmp_path: Path) -> None:
    """``MODELYARD_UPSTREAMS``: a dead upstream, then a real OpenAI-compatible replica process."""
    placement = LocalPlacement(tmp_path / "upstream", gpu=False)
    upstream = placement.start(ReplicaSpec(model="sim", engine="simulated"), "up-1", deployment="dep_up")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "POSTGRES_"))}
    operator = [
        {
            "name": "gone",
            "base_url": f"http://127.0.0.1:{free_port()}/v1",
            "api_key": "sk-gone-secret",
            "models": ["ext"],
        },
        {
            "name": "sim",
            "base_url": f"{upstream.base_url}/v1",
            "api_key": upstream.token,
            "models": ["sim-*", "ext"],
        },
    ]
    yard = Yard(
        env=env
        | {
            "MODELYARD_DATA_DIR": str(tmp_path / "data"),
            "MODELYARD_ENGINE": "simulated",
            "MODELYARD_UPSTREAMS": json.dumps(operator),
        },
        cwd=tmp_path,
        urls=[],
    )
    try:
        yard.fund("1.00")
        yard.start("serve", port=free_port())
        yard.await_key()
        sdk = openai.OpenAI(base_url=f"{yard.urls[0]}/api/v1/public", api_key=yard.key, max_retries=0)
        answer = sdk.chat.completions.with_raw_response.create(
            model="ext", messages=[{"role": "user", "content": "one two"}]
        )
        assert answer.headers["x-route-target"] == "upstream:sim"
        assert answer.parse().choices[0].message.content == "one two"
        with pytest.raises(openai.NotFoundError):
            sdk.chat.completions.create(model="sim-x", messages=[{"role": "user", "content": "x"}])
        logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*.log"))
        assert "sk-gone-secret" not in logs
        assert upstream.token not in logs
    finally:
        yard.stop()
        placement.stop_all()
