"""The balances view folded from a real history: exhaustion, top-ups and batch boundaries.

The write side runs on eventsourcing's in-memory recorder and the view on a real SQLite
file; the runner is the one the workers use.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from modelyard.adapters.eventlog.sources import NotificationLogSource
from modelyard.adapters.views.db import SqliteViews
from modelyard.domain.accounts.aggregate import CreditsAdded
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.billing.pricing import Tier, minute_price
from modelyard.domain.catalog.models import Size
from modelyard.domain.deployments.service import MeterMinute, OnDeployment, ReplicaCommand, RequestDeployment
from modelyard.domain.services import Services
from modelyard.domain.shared.store import Store
from modelyard.projections.balances.projection import BalancesProjection
from modelyard.projections.balances.queries import balance_of
from modelyard.projections.common import account_ref
from modelyard.workers.projection_runner import ProjectionRunner

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
M = timedelta(minutes=1)


@pytest.fixture
def store() -> Iterator[Store]:
    app = Store(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


@pytest.fixture
def services(store: Store) -> Services:
    return Services.over(store)


def _view(store: Store, folder: Path, *, batch: int) -> list[tuple[Any, ...]]:
    views = SqliteViews(folder / f"views-{batch}.sqlite3")
    runner = ProjectionRunner(views, NotificationLogSource(store.recorder), [BalancesProjection()])
    while runner.run_once(max_records=batch, timeout_s=0):
        pass
    with views.transaction() as tx:
        rows = tx.execute("SELECT account_id, balance, credited, charged, exhausted FROM balances")
    views.close()
    return rows


def _run_dry(services: Services) -> UUID:
    """An account whose one running deployment spends its whole balance in its first minute."""
    price = minute_price(tier=Tier.DEDICATED, size=Size.SMALL, capacity=1)
    account = services.accounts.open_account(OpenAccount(name="acme", at=T0)).id
    services.accounts.add_credits(AddCredits(account_id=account, amount=price, at=T0))
    request = RequestDeployment(account_id=account, model="smollm2-135m", at=T0)
    deployment = services.deployments.request(request).id
    services.deployments.start_replica(ReplicaCommand(deployment_id=deployment, replica="r0", at=T0))
    services.deployments.activate(OnDeployment(deployment_id=deployment, at=T0))
    at = T0 + M + timedelta(seconds=1)
    services.deployments.meter(MeterMinute(deployment_id=deployment, minute=T0, at=at))
    assert services.accounts.get(account).exhausted
    return account


def test_an_exhausted_account_shows_exhausted(services: Services, store: Store, tmp_path: Path) -> None:
    account = _run_dry(services)
    price = minute_price(tier=Tier.DEDICATED, size=Size.SMALL, capacity=1)
    assert _view(store, tmp_path, batch=500) == [(account_ref(account), 0, price, price, 1)]


@pytest.mark.parametrize("batch", [1, 2, 500])
def test_a_top_up_ends_the_exhaustion_in_the_view_as_in_the_aggregate(
    services: Services, store: Store, tmp_path: Path, batch: int
) -> None:
    # The reconciler stops the deployments of every account the view calls exhausted; a
    # view that kept the flag after a top-up would stop the account's next deployment too.
    account = _run_dry(services)
    services.accounts.add_credits(AddCredits(account_id=account, amount=5_000_000, at=T0 + 2 * M))
    assert not services.accounts.get(account).exhausted
    (row,) = _view(store, tmp_path, batch=batch)
    assert row[1] == services.accounts.get(account).balance
    assert row[4] == 0


def test_a_credit_for_an_account_never_opened_is_refused_loudly(tmp_path: Path) -> None:
    views = SqliteViews(tmp_path / "views.sqlite3")
    views.ensure(BalancesProjection.schema)
    stray = CreditsAdded(originator_id=UUID(int=7), originator_version=2, timestamp=T0, amount=1_000)
    with pytest.raises(LookupError, match="no AccountOpened"), views.transaction() as tx:
        BalancesProjection().apply(tx, stray, 1)
    with views.transaction() as tx:
        assert tx.execute("SELECT count(*) FROM ledger") == [(0,)]
    views.close()


@pytest.mark.parametrize("batch", [1, 3, 500])
def test_the_view_shows_what_live_deployments_hold_and_what_is_available(
    services: Services, store: Store, tmp_path: Path, batch: int
) -> None:
    price = minute_price(tier=Tier.DEDICATED, size=Size.SMALL, capacity=1)
    account = services.accounts.open_account(OpenAccount(name="acme", at=T0)).id
    services.accounts.add_credits(AddCredits(account_id=account, amount=10 * price, at=T0))
    request = RequestDeployment(account_id=account, model="smollm2-135m", at=T0)
    first, second = services.deployments.request(request).id, services.deployments.request(request).id
    services.deployments.request_teardown(OnDeployment(deployment_id=first, at=T0))
    services.deployments.request(request)
    views = SqliteViews(tmp_path / f"views-{batch}.sqlite3")
    runner = ProjectionRunner(views, NotificationLogSource(store.recorder), [BalancesProjection()])
    while runner.run_once(max_records=batch, timeout_s=0):
        pass
    with views.transaction() as tx:
        shown = balance_of(tx, account_ref(account))
        held = tx.execute("SELECT deployment_id FROM reservations")
    views.close()
    assert shown is not None
    assert (shown.balance, shown.reserved, shown.available) == (10 * price, 2 * price, 8 * price)
    assert first.hex not in {row[0] for row in held}
    assert second.hex in {row[0] for row in held}
    assert services.accounts.get(account).reserved == shown.reserved
