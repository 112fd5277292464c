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
from modelyard.domain.application import Yard
from modelyard.domain.billing.pricing import Tier, minute_price
from modelyard.domain.catalog.models import Size
from modelyard.projections.balances.projection import BalancesProjection
from modelyard.projections.common import account_ref
from modelyard.workers.projection_runner import ProjectionRunner

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
M = timedelta(minutes=1)


@pytest.fixture
def yard() -> Iterator[Yard]:
    app = Yard(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


def _view(yard: Yard, folder: Path, *, batch: int) -> list[tuple[Any, ...]]:
    views = SqliteViews(folder / f"views-{batch}.sqlite3")
    runner = ProjectionRunner(views, NotificationLogSource(yard.recorder), [BalancesProjection()])
    while runner.run_once(max_records=batch, timeout_s=0):
        pass
    with views.transaction() as tx:
        rows = tx.execute("SELECT account_id, balance, credited, charged, exhausted FROM balances")
    views.close()
    return rows


def _run_dry(yard: Yard) -> UUID:
    """An account whose one running deployment spends its whole balance in its first minute."""
    price = minute_price(tier=Tier.DEDICATED, size=Size.SMALL, capacity=1)
    account = yard.open_account(name="acme", at=T0)
    yard.add_credits(account, price, at=T0)
    deployment = yard.request_deployment(account_id=account, model="smollm2-135m", at=T0)
    yard.activate(deployment, at=T0)
    yard.meter(deployment, T0, at=T0 + M + timedelta(seconds=1))
    assert yard.get_account(account).exhausted
    return account


def test_an_exhausted_account_shows_exhausted(yard: Yard, tmp_path: Path) -> None:
    account = _run_dry(yard)
    price = minute_price(tier=Tier.DEDICATED, size=Size.SMALL, capacity=1)
    assert _view(yard, tmp_path, batch=500) == [(account_ref(account), 0, price, price, 1)]


@pytest.mark.parametrize("batch", [1, 2, 500])
def test_a_top_up_ends_the_exhaustion_in_the_view_as_in_the_aggregate(
    yard: Yard, tmp_path: Path, batch: int
) -> None:
    # The reconciler stops the deployments of every account the view calls exhausted; a
    # view that kept the flag after a top-up would stop the account's next deployment too.
    account = _run_dry(yard)
    yard.add_credits(account, 5_000_000, at=T0 + 2 * M)
    assert not yard.get_account(account).exhausted
    (row,) = _view(yard, tmp_path, batch=batch)
    assert row[1] == yard.get_account(account).balance
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
