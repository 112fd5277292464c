"""Credit holds and quotas under random provisions, scales, failures, idling, top-ups and metering.

One account, the services over one store, and what the workers do: replicas start and
deployments activate, the meter runs at least every minute, and an exhausted account's
live deployments are torn down (the reconciler's rule). After every step:
- the account holds exactly one minute at the price of each live deployment's largest
  capacity (asked or being scaled to), and nothing for ended ones;
- an admission (provision, scale up, wake from zero) never leaves available credit negative;
- live deployments and their replicas stay within the plan's quota;
- the balance never goes below minus one tick (the most the holds ever covered).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.billing.pricing import minute_price
from modelyard.domain.catalog.models import Plan
from modelyard.domain.catalog.plans import plan_quotas
from modelyard.domain.deployments.lifecycle import BILLABLE, State
from modelyard.domain.deployments.metering import due_minutes
from modelyard.domain.deployments.service import (
    MeterMinute,
    OnDeployment,
    ReplicaCommand,
    RequestDeployment,
    WithCapacity,
    WithReason,
)
from modelyard.domain.services import Services
from modelyard.domain.shared.errors import DomainError
from modelyard.domain.shared.store import Store

T0 = datetime(2026, 6, 1, 12, 0, 5, tzinfo=UTC)
QUOTAS = plan_quotas("free=3/6")
LIVE = {State.PROVISIONING, *BILLABLE}
ADMITTING = ("provision", "scale", "wake")
steps = st.lists(
    st.tuples(
        st.sampled_from(
            ["provision", "run", "scale", "settle", "fail", "teardown", "zero", "wake", "credit"]
        ),
        st.integers(0, 7),  # which deployment, which capacity, how much credit
        st.integers(0, 60),  # seconds passing first (the meter runs at least once a minute)
    ),
    max_size=40,
)


@contextmanager
def _services() -> Iterator[Services]:
    store = Store(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    try:
        yield Services.over(store, QUOTAS)
    finally:
        store.close()


def _act(services: Services, deps: list[UUID], account: UUID, *, name: str, n: int, now: datetime) -> None:
    d = services.deployments
    capacity = (1, 2, 4, 8)[n % 4]
    if name == "provision":
        request = RequestDeployment(account_id=account, model="smollm2-135m", capacity=capacity, at=now)
        deps.append(d.request(request).id)
    elif name == "credit":
        services.accounts.add_credits(AddCredits(account_id=account, amount=1_000 * (n + 1), at=now))
    elif deps:
        dep = deps[n % len(deps)]
        if name == "run":
            for r in range(d.get(dep).capacity):
                d.start_replica(ReplicaCommand(deployment_id=dep, replica=f"r{r}", at=now))
            d.activate(OnDeployment(deployment_id=dep, at=now))
        elif name == "scale":
            d.request_scale(WithCapacity(deployment_id=dep, capacity=capacity, at=now))
        elif name == "settle":
            pending = d.get(dep).pending_capacity
            d.finish_scale(WithCapacity(deployment_id=dep, capacity=pending or capacity, at=now))
        elif name == "fail":
            d.fail_provisioning(WithReason(deployment_id=dep, reason="lost", at=now))
        elif name == "teardown":
            d.request_teardown(OnDeployment(deployment_id=dep, at=now))
        elif name == "zero":
            d.scale_to_zero(OnDeployment(deployment_id=dep, at=now))
        else:
            d.start_replica(ReplicaCommand(deployment_id=dep, replica="w", at=now))
            d.activate(OnDeployment(deployment_id=dep, at=now))


def _workers(services: Services, deps: list[UUID], account: UUID, now: datetime) -> None:
    """The meter's run, then the reconciler's rule for an exhausted account."""
    for dep in deps:
        for minute in due_minutes(services.deployments.get(dep), now):
            services.deployments.meter(MeterMinute(deployment_id=dep, minute=minute, at=now))
    if services.accounts.get(account).exhausted:
        for dep in deps:
            if services.deployments.get(dep).state in LIVE:
                services.deployments.request_teardown(OnDeployment(deployment_id=dep, at=now))


def _hold(services: Services, dep: UUID) -> int:
    deployment = services.deployments.get(dep)
    largest = max(deployment.capacity, deployment.pending_capacity or 0)
    return minute_price(tier=deployment.tier, size=deployment.size, capacity=largest)


@settings(max_examples=60, deadline=None)
@given(steps, st.integers(2_500, 40_000))
def test_holds_match_live_deployments_admissions_fit_and_no_overdraft(
    plan: list[tuple[str, int, int]], credit: int
) -> None:
    with _services() as services:
        account = services.accounts.open_account(OpenAccount(name="a", at=T0)).id
        services.accounts.add_credits(AddCredits(account_id=account, amount=credit, at=T0))
        deps: list[UUID] = []
        now, most_held = T0, 0
        for name, n, passing in plan:
            now += timedelta(seconds=passing)
            _workers(services, deps, account, now)
            before = services.accounts.get(account)
            try:
                _act(services, deps, account, name=name, n=n, now=now)
            except DomainError:
                assert services.accounts.get(account).version == before.version or name not in ADMITTING
                continue
            held = services.accounts.get(account)
            live = [d for d in deps if services.deployments.get(d).state in LIVE]
            assert held.reservations.keys() == set(live)
            assert {d: r.amount for d, r in held.reservations.items()} == {
                d: _hold(services, d) for d in live
            }
            if name in ADMITTING and held.reserved > before.reserved:
                assert held.available >= 0
            quota = QUOTAS[Plan.FREE]
            assert len(live) <= quota.deployments
            assert sum(r.replicas for r in held.reservations.values()) <= quota.replicas
            most_held = max(most_held, held.reserved)
            assert held.balance >= -most_held
        for _ in range(10):
            now += timedelta(seconds=60)
            _workers(services, deps, account, now)
            assert services.accounts.get(account).balance >= -most_held
