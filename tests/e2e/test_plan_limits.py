"""Per-plan limits: requests and tokens per minute per key on the second dialect's routes.

The first document's routes keep its flat limit per key (``MODELYARD_RATE_LIMIT_RPM``);
``/api/v1/public/…`` take the key's plan's. Tokens are counted from each answer's usage,
across API processes: the cluster test floods two API processes and adds up the tokens the
answers report.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from modelyard.adapters.services.kafka import LocalKafka
from modelyard.adapters.services.postgres import LocalPostgres

from .conftest import Yard, free_port

pytestmark = pytest.mark.e2e
PUBLIC = "/api/v1/public"
CHAT = {"model": "x", "messages": [{"role": "user", "content": "Name a planet."}], "max_tokens": 16}


def _yard(tmp: Path, limits: str, extra: dict[str, str] | None = None) -> Yard:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "POSTGRES_"))}
    env |= {
        "MODELYARD_DATA_DIR": str(tmp / "data"),
        "MODELYARD_ENGINE": "simulated",
        "MODELYARD_PLAN_LIMITS": limits,
    }
    return Yard(env=env | (extra or {}), cwd=tmp, urls=[])


def _early_in_a_minute() -> None:
    # A burst judged against one window: start it early in a minute.
    if datetime.now(UTC).second > 40:
        time.sleep(61 - datetime.now(UTC).second)


def _org_deployment(client: httpx.Client, yard: Yard) -> str:
    """An organisation of the caller's account, funded, with an active deployment; its chat path."""
    org_id = client.post(f"{PUBLIC}/orgs", json={"name": "limits"}).json()["id"]
    yard.cli("credits", "add", org_id, "2.00")
    dep_id = client.post(f"{PUBLIC}/orgs/{org_id}/deployments", json={"model_id": "smollm2-135m"}).json()[
        "id"
    ]
    deadline = time.monotonic() + 120
    while client.get(f"{PUBLIC}/orgs/{org_id}/deployments/{dep_id}").json()["status"] != "active":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    return f"{PUBLIC}/orgs/{org_id}/deployments/{dep_id}/chat/completions"


@pytest.fixture
def plan_limited(tmp_path: Path) -> Iterator[Yard]:
    yard = _yard(tmp_path, "free=5/100000")
    yard.fund("5.00")
    yard.start("serve", port=free_port())
    yield yard
    yard.stop()


def test_the_plan_limits_inference_requests_and_the_flat_limit_holds_on_management(
    plan_limited: Yard,
) -> None:
    client = httpx.Client(
        base_url=plan_limited.urls[0], headers={"Authorization": f"Bearer {plan_limited.key}"}, timeout=60
    )
    chat = _org_deployment(client, plan_limited)
    _early_in_a_minute()
    answers = [client.post(chat, json=CHAT) for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5, answers[-1].text
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["4", "3", "2", "1", "0"]
    for answer in answers:
        assert answer.headers["X-RateLimit-Limit"] == "5"
        assert answer.headers["X-RateLimit-Limit-Tokens"] == "100000"
        assert "X-RateLimit-Remaining-Tokens" in answer.headers
        assert "X-RateLimit-Reset-Tokens" in answer.headers
    refused = client.post(chat, json=CHAT)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert "free plan" in refused.json()["error"]["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    # Management calls of either dialect (polling, the catalog) keep the flat limit, and
    # the second dialect's answers report the tokens window beside it.
    catalog = client.get(f"{PUBLIC}/models")
    assert catalog.status_code == 200
    assert catalog.headers["X-RateLimit-Limit"] == "1000"
    assert catalog.headers["X-RateLimit-Limit-Tokens"] == "100000"
    # An unknown path is counted and answered with the headers too.
    unknown = client.get(f"{PUBLIC}/no-such-route")
    assert unknown.status_code == 404
    assert unknown.headers["X-RateLimit-Limit"] == "1000"
    assert "X-RateLimit-Remaining-Tokens" in unknown.headers
    first = client.get("/v1/balance")
    assert first.status_code == 200
    assert first.headers["X-RateLimit-Limit"] == "1000"
    missing = client.get("/v1/no-such-route")
    assert missing.status_code == 404
    assert missing.headers["X-RateLimit-Limit"] == "1000"
    assert int(missing.headers["X-RateLimit-Remaining"]) < int(first.headers["X-RateLimit-Remaining"])
    anonymous = httpx.get(f"{plan_limited.urls[0]}/nowhere")
    assert anonymous.status_code == 404
    assert "X-RateLimit-Limit" in anonymous.headers


@pytest.fixture
def token_limited(tmp_path: Path) -> Iterator[Yard]:
    yard = _yard(tmp_path, "free=100000/600")
    yard.fund("5.00")
    yard.start("serve", port=free_port())
    yield yard
    yard.stop()


def test_tokens_per_minute_are_counted_from_each_answer(token_limited: Yard) -> None:
    client = httpx.Client(
        base_url=token_limited.urls[0], headers={"Authorization": f"Bearer {token_limited.key}"}, timeout=60
    )
    chat = _org_deployment(client, token_limited)
    _early_in_a_minute()
    used = 0
    remaining = []
    while True:
        answer = client.post(chat, json=CHAT)
        if answer.status_code == 429:
            break
        assert answer.status_code == 200, answer.text
        used += answer.json()["usage"]["total_tokens"]
        remaining.append(int(answer.headers["X-RateLimit-Remaining-Tokens"]))
        assert used <= 600
    assert answer.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert "tokens/min" in answer.json()["error"]["message"]
    assert int(answer.headers["Retry-After"]) >= 1
    assert answer.headers["X-RateLimit-Limit-Tokens"] == "600"
    # Each answer's real usage was counted (the reservation given back): the window is full
    # of real tokens, not of reservations, and the headers went down as it filled.
    assert used > 600 - (len(b"Name a planet.") + 100 + CHAT["max_tokens"])
    assert remaining == sorted(remaining, reverse=True)


@pytest.fixture
def two_api_processes(
    local_postgres: LocalPostgres, local_kafka: LocalKafka, tmp_path: Path
) -> Iterator[Yard]:
    name = f"tpm_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(local_postgres.conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    cluster = (
        local_postgres.env()
        | local_kafka.env()
        | {"POSTGRES_DBNAME": name, "MODELYARD_KAFKA_TOPIC": f"events.{name}"}
    )
    yard = _yard(tmp_path, f"free=100000/{TOKENS_LIMIT}", cluster)
    with yard:
        yard.start_cluster()
        yield yard


TOKENS_LIMIT = 2000


@pytest.mark.integration
def test_tokens_per_minute_hold_across_two_api_processes(two_api_processes: Yard) -> None:
    yard = two_api_processes
    clients = [
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {yard.key}"}, timeout=60)
        for url in yard.urls
    ]
    chat = _org_deployment(clients[0], yard)
    # Both processes see the deployment serving before the flood.
    for client in clients:
        deadline = time.monotonic() + 60
        while client.post(chat, json={**CHAT, "max_tokens": 1}).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.3)
    _early_in_a_minute()
    time.sleep(1)

    def call(i: int) -> httpx.Response:
        return clients[i % 2].post(chat, json=CHAT)

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(call, range(400)))
    admitted = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(admitted) + len(refused) == len(answers), {a.status_code for a in answers}
    tokens = sum(a.json()["usage"]["total_tokens"] for a in admitted)
    warmup = 2 * 20  # the two warm-up calls, at most this many tokens each
    print(f"admitted {len(admitted)} calls, {tokens} tokens (limit {TOKENS_LIMIT}), refused {len(refused)}")
    assert tokens + warmup <= TOKENS_LIMIT * 1.05
    # Not vacuous: the limit, not something else, stopped the flood, after most of it was used.
    assert refused
    assert tokens >= TOKENS_LIMIT // 2
    assert all(any(a.status_code == 200 for a in answers[n::2]) for n in (0, 1))
