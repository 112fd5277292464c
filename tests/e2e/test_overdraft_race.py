"""Twenty racing provisions on credit for two, over real HTTP: two start, none overdraw.

``modelyard serve`` on the simulated engine, an account funded with exactly two minutes of
the smallest dedicated model (what two deployments hold), and twenty provisions at once.
Exactly two are admitted and run; the other eighteen get 402 INSUFFICIENT_CREDITS. Then the
server is stopped and its store metered on, minutes ahead, by the meter's own command, with
the reconciler's one rule about money (an exhausted account's deployments are torn down)
applied after each run: the balance never goes below minus one tick (one minute of both).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from modelyard.adapters.eventstore.env import store_env
from modelyard.domain.billing.pricing import Tier, minute_price
from modelyard.domain.catalog.models import Size
from modelyard.domain.deployments.lifecycle import BILLABLE, State
from modelyard.domain.deployments.metering import due_minutes
from modelyard.domain.deployments.service import MeterMinute, OnDeployment
from modelyard.domain.services import Services
from modelyard.domain.shared import ids
from modelyard.domain.shared.money import format_usd
from modelyard.domain.shared.store import Store
from modelyard.settings import load_settings

from .conftest import Yard, free_port
from .test_five_steps import poll_until

pytestmark = pytest.mark.e2e

TICK = minute_price(tier=Tier.DEDICATED, size=Size.SMALL, capacity=1)  # 2_500 micro-dollars


@pytest.fixture
def credit_for_two(tmp_path: Path) -> Iterator[Yard]:
    """The simulated engine, and an account holding exactly two deployments' first minute."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "POSTGRES_"))}
    yard = Yard(
        env=env | {"MODELYARD_DATA_DIR": str(tmp_path / "data"), "MODELYARD_ENGINE": "simulated"},
        cwd=tmp_path,
        urls=[],
    )
    yard.fund(str(Decimal(2 * TICK) / 1_000_000))
    yard.start("serve", port=free_port())
    yield yard
    yard.stop()


def _meter_on(yard: Yard, deployments: list[str], start: datetime) -> list[int]:
    """Meter the stopped server's store every 15 s for five minutes; stop on exhaustion.

    Returns the balance after each meter run.
    """
    store = Store(env=store_env(load_settings(yard.env)))
    try:
        services = Services.over(store)
        account = ids.parse_id(yard.account, ids.ACCOUNT)
        found = [ids.parse_deployment_id(d) for d in deployments]
        balances = []
        for step in range(1, 21):
            now = start + timedelta(seconds=15 * step)
            for dep in found:
                for minute in due_minutes(services.deployments.get(dep), now):
                    services.deployments.meter(MeterMinute(deployment_id=dep, minute=minute, at=now))
            if services.accounts.get(account).exhausted:
                for dep in found:
                    if services.deployments.get(dep).state in BILLABLE:
                        services.deployments.request_teardown(OnDeployment(deployment_id=dep, at=now))
            balances.append(services.accounts.get(account).balance)
        assert all(services.deployments.get(dep).state is State.TEARDOWN for dep in found)
        return balances
    finally:
        store.close()


def test_twenty_provisions_on_credit_for_two_start_two_and_never_overdraw(credit_for_two: Yard) -> None:
    yard = credit_for_two
    yard.await_key()
    client = httpx.Client(base_url=yard.urls[0], headers={"Authorization": f"Bearer {yard.key}"}, timeout=60)
    body = {"model": "smollm2-135m", "capacity": 1}
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: client.post("/v1/provision", json=body), range(20)))

    admitted = [a.json()["data"]["instance"]["id"] for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code != 201]
    assert len(admitted) == 2, [a.text for a in answers]
    for answer in refused:
        assert answer.status_code == 402, answer.text
        error = answer.json()["error"]
        assert error["code"] == "INSUFFICIENT_CREDITS"
        assert "available credit" in error["message"]
    for instance_id in admitted:
        poll_until(client, instance_id, "running")
    listed = client.get("/v1/instances").json()["data"]
    assert sorted(i["id"] for i in listed["instances"]) == sorted(admitted)
    # A twenty-first, later, is refused too: the two still hold all the credit.
    late = client.post("/v1/provision", json=body)
    assert (late.status_code, late.json()["error"]["code"]) == (402, "INSUFFICIENT_CREDITS")
    # The balance says so: a minute of each is held, nothing is available.
    shown = client.get("/v1/balance").json()["data"]
    assert shown["reserved_usd"] == format_usd(2 * TICK)
    assert Decimal(shown["available_usd"]) <= 0
    client.close()
    # Billing counts whole seconds of a replica's run: both must serve past one before the
    # server stops (and records their losses), or a deployment owes nothing and the credit
    # is never used up.
    time.sleep(1.5)
    yard.stop()

    balances = _meter_on(yard, admitted, datetime.now(UTC))
    # Both ran, were charged, and were stopped; never more than one tick (a minute of both) below zero.
    assert balances[-1] < 2 * TICK
    assert min(balances) >= -2 * TICK
