"""Destroy settles at once: the teardown's record charges every minute still owed, the last
partial one included, so the balance right after is final and the meter finds nothing more."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.billing.pricing import Tier, hourly_micros
from modelyard.domain.catalog.models import Size
from modelyard.domain.deployments.metering import due_minutes
from modelyard.domain.deployments.service import OnDeployment, ReplicaCommand, RequestDeployment
from modelyard.domain.services import Services
from modelyard.domain.shared.store import Store

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
CREDIT = 5_000_000


@pytest.fixture
def store() -> Iterator[Store]:
    app = Store(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


def _running(services: Services, at: datetime) -> tuple[UUID, UUID]:
    account = services.accounts.open_account(OpenAccount(name="a", plan="free", at=T0)).id
    services.accounts.add_credits(AddCredits(account_id=account, amount=CREDIT, at=T0))
    dep = services.deployments.request(RequestDeployment(account_id=account, model="smollm2-135m", at=T0)).id
    services.deployments.start_replica(
        ReplicaCommand(deployment_id=dep, replica="r1", base_url="http://127.0.0.1:9", at=at)
    )
    services.deployments.activate(OnDeployment(deployment_id=dep, at=at))
    return account, dep


def test_teardown_charges_the_partial_minute_and_every_unmetered_one_in_the_same_record(store: Store) -> None:
    services = Services.over(store)
    start = T0 + timedelta(seconds=30)
    account, dep = _running(services, start)
    # The meter never ran: 09:00:30 - 09:02:45 is owed (30 s, 60 s and 45 s), all at once.
    end = T0 + timedelta(minutes=2, seconds=45)
    before = store.recorder.max_notification_id()
    services.deployments.request_teardown(OnDeployment(deployment_id=dep, at=end))
    recorded = store.recorder.select_notifications(before + 1, 100)
    topics = [n.topic.replace(":", ".").rsplit(".", 1)[-1] for n in recorded]
    assert topics[0] == "TeardownRequested"
    assert topics.count("MinuteMetered") == 3
    assert topics.count("CreditsCharged") == 3
    assert topics[-1] == "CreditReleased"

    deployment = services.deployments.get(dep)
    per_second_numerator = hourly_micros(Tier.DEDICATED, Size.SMALL)  # micro-dollars per 3600 s
    owed = [30, 60, 45]
    expected = sum(per_second_numerator * s // 3600 for s in owed)
    balance = services.accounts.get(account)
    assert CREDIT - balance.balance == expected
    assert balance.reserved == 0
    assert deployment.last_metered == T0 + timedelta(minutes=2)
    # Nothing is left for the meter, now or after the minute ends.
    assert due_minutes(deployment, T0 + timedelta(minutes=10)) == []


def test_a_deployment_that_never_served_owes_nothing_at_teardown(store: Store) -> None:
    services = Services.over(store)
    account = services.accounts.open_account(OpenAccount(name="a", plan="free", at=T0)).id
    services.accounts.add_credits(AddCredits(account_id=account, amount=CREDIT, at=T0))
    dep = services.deployments.request(RequestDeployment(account_id=account, model="smollm2-135m", at=T0)).id
    services.deployments.request_teardown(OnDeployment(deployment_id=dep, at=T0 + timedelta(seconds=5)))
    assert services.accounts.get(account).balance == CREDIT
    assert services.deployments.get(dep).state.value == "teardown"
    assert services.deployments.get(dep).last_metered is None
