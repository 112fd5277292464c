"""The shared tier is a real pool: shared deployments of one model, of different accounts,
are served by one replica; each is billed at the shared price as its own, and the pool
replica lives as long as one of them does. A dead pool replica is replaced for all."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.billing.pricing import Tier
from modelyard.domain.deployments.service import OnDeployment, Provision, RequestDeployment
from modelyard.projections.deployments.queries import serving_replicas
from modelyard.workers.pool import POOL

from .test_reconciler_recovery import Yard, _pass_until

pytestmark = pytest.mark.integration


@pytest.fixture
def pooled(tmp_path: Path) -> Iterator[Yard]:
    made = Yard(tmp_path)
    yield made
    made.placement.stop_all()
    made.runner.close()
    made.store.close()


def _shared(yard: Yard, name: str) -> UUID:
    at = datetime.now(UTC)
    account = yard.services.accounts.open_account(OpenAccount(name=name, at=at)).id
    yard.services.accounts.add_credits(AddCredits(account_id=account, amount=5_000_000, at=at))
    request = RequestDeployment(account_id=account, model="smollm2-135m", tier="shared", at=at)
    return yard.services.deployments.provision(
        Provision(deployment=request, key_hash=name, key_display=name)
    ).id


def _routes(yard: Yard, dep: UUID) -> list[tuple[str, str]]:
    yard.catch_up()
    with yard.views.read() as tx:
        return [(r.base_url, r.token) for r in serving_replicas(tx, dep)]


def _answers(route: tuple[str, str]) -> int:
    return httpx.get(f"{route[0]}/health", headers={"Authorization": f"Bearer {route[1]}"}).status_code


def test_shared_deployments_of_one_model_share_one_replica(pooled: Yard) -> None:
    yard = pooled
    first, second = _shared(yard, "tenant-a"), _shared(yard, "tenant-b")
    reconciler = yard.reconciler()
    _pass_until(yard, reconciler, first, "running")
    _pass_until(yard, reconciler, second, "running")
    assert _routes(yard, first) == _routes(yard, second)
    (route,) = _routes(yard, first)
    assert _answers(route) == 200
    assert len(yard.placement.replicas(POOL)) == 1
    for dep in (first, second):
        deployment = yard.services.deployments.get(dep)
        assert deployment.tier is Tier.SHARED
        assert deployment.serving == 1  # each billed for its one (pooled) replica, at the shared price

    # The pool replica dies: both deployments heal onto one new pool replica.
    (handle,) = yard.placement.replicas(POOL)
    assert handle.pid is not None
    os.kill(handle.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while yard.placement.alive(handle):
        assert time.monotonic() < deadline, "the killed pool replica still looks alive"
        time.sleep(0.1)
    _pass_until(yard, reconciler, first, "running")
    _pass_until(yard, reconciler, second, "running")
    assert _routes(yard, first) == _routes(yard, second) != [route]
    assert len(yard.placement.replicas(POOL)) == 1

    # One tenant leaves: the pool replica stays for the other; the last one stops it.
    (route,) = _routes(yard, second)
    yard.services.deployments.request_teardown(OnDeployment(deployment_id=first, at=datetime.now(UTC)))
    _pass_until(yard, reconciler, first, "destroyed")
    assert _answers(route) == 200
    assert reconciler.pool.users("smollm2-135m") == {second}
    yard.services.deployments.request_teardown(OnDeployment(deployment_id=second, at=datetime.now(UTC)))
    _pass_until(yard, reconciler, second, "destroyed")
    assert yard.placement.replicas(POOL) == []
    with pytest.raises(httpx.TransportError):
        _answers(route)
