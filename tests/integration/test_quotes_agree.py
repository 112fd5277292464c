"""A quote names the price the provision charges: every catalog model, tier, capacity, preset.

For each combination, on a real event store: the quote, then the provision of the same body
on the same account. Where the provision is admitted, its hold, and the charge for a full
minute with every replica serving, are the quote's price per minute; where it is refused
for the catalog's reasons, the quote is refused with the same code and message; where it is
refused for the account's (credit), the quote still prices it and names that refusal.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelyard.domain.accounts.aggregate import CreditsCharged
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.billing.pricing import CAPACITY_TENTHS, Tier, hourly_micros
from modelyard.domain.catalog.hardware import Preset
from modelyard.domain.catalog.models import CATALOG
from modelyard.domain.deployments.service import (
    MeterMinute,
    OnDeployment,
    ReplicaCommand,
    RequestDeployment,
)
from modelyard.domain.services import Services
from modelyard.domain.shared.errors import DomainError
from modelyard.domain.shared.store import Store

T0 = datetime(2026, 11, 2, 9, 0, 0, tzinfo=UTC)
COMBINATIONS = list(
    itertools.product(
        [m.id for m in CATALOG if m.active],
        [t.value for t in Tier],
        sorted(CAPACITY_TENTHS),
        [p.value for p in Preset],
    )
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    folder: Path = tmp_path_factory.mktemp("quotes")
    store = Store(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(folder / "events.sqlite3"),
            "CREATE_TABLE": "y",
        }
    )
    yield store
    store.close()


@pytest.fixture(scope="module")
def services(store: Store) -> Services:
    return Services.over(store)


def _outcome(call: object) -> tuple[str, str] | None:
    try:
        call()  # type: ignore[operator]
    except DomainError as exc:
        return exc.code, exc.message
    return None


@pytest.mark.parametrize("case", COMBINATIONS, ids=lambda c: "-".join(map(str, c)))
def test_quote_and_provision_agree(store: Store, services: Services, case: tuple[str, str, int, str]) -> None:
    model, tier, capacity, preset = case
    account = services.accounts.open_account(OpenAccount(name="q", plan="enterprise", at=T0)).id
    services.accounts.add_credits(AddCredits(account_id=account, amount=1_000_000_000, at=T0))
    asked = RequestDeployment(
        account_id=account, model=model, tier=tier, capacity=capacity, preset=preset, at=T0
    )
    refused = _outcome(lambda: services.deployments.quote(asked))
    if refused is not None:
        # The catalog refuses the quote exactly as it refuses the provision.
        assert _outcome(lambda: services.deployments.request(asked)) == refused
        return
    quote = services.deployments.quote(asked)
    assert quote.refusal is None
    assert quote.hour_micros == hourly_micros(Tier(tier), quote_size(model)) * CAPACITY_TENTHS[capacity] // 10
    made = services.deployments.request(asked).id
    hold = services.accounts.get(account).reservations[made]
    assert hold.amount == quote.minute_micros
    # A whole minute with every replica serving is charged the quoted price to the micro-dollar.
    deployments = services.deployments
    for n in range(capacity):
        deployments.start_replica(ReplicaCommand(deployment_id=made, replica=f"r{n}", at=T0))
    deployments.activate(OnDeployment(deployment_id=made, at=T0))
    deployments.meter(MeterMinute(deployment_id=made, minute=T0, at=T0 + timedelta(minutes=2)))
    charges = [e for e in store.events.get(account) if isinstance(e, CreditsCharged)]
    assert [c.amount for c in charges] == [quote.minute_micros]


def quote_size(model: str) -> object:
    return next(m.size for m in CATALOG if m.id == model)


def test_a_quote_prices_what_the_account_cannot_afford_and_says_why(services: Services) -> None:
    poor = services.accounts.open_account(OpenAccount(name="poor", at=T0)).id
    asked = RequestDeployment(account_id=poor, model="smollm2-135m", at=T0)
    quote = services.deployments.quote(asked)
    assert quote.minute_micros == 2500  # $0.15/h at 1x, a minute
    assert quote.refusal is not None
    assert quote.refusal.startswith("INSUFFICIENT_CREDITS: ")
    assert _outcome(lambda: services.deployments.request(asked)) == (
        "INSUFFICIENT_CREDITS",
        quote.refusal.removeprefix("INSUFFICIENT_CREDITS: "),
    )
