"""Deployments of models that are not chat, and of uploaded models, are billed by the minute
like any other: the catalog's small dedicated price for the CPU ones, the upload's size
class for a ``byom:`` one, which only its own account can provision."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.deployments.service import MeterMinute, OnDeployment, ReplicaCommand, RequestDeployment
from modelyard.domain.services import Services
from modelyard.domain.shared import errors
from modelyard.domain.shared.store import Store

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)
# Dedicated small at 1x: $0.15/h = 2_500 micro-dollars a minute (FEATURES D2).
SMALL_MINUTE = 2_500


@pytest.fixture
def services() -> Iterator[Services]:
    store = Store(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield Services.over(store)
    store.close()


def _funded(services: Services) -> UUID:
    account = services.accounts.open_account(OpenAccount(name="acme", at=T0)).id
    services.accounts.add_credits(AddCredits(account_id=account, amount=1_000_000, at=T0))
    return account


def _first_minute(services: Services, command: RequestDeployment) -> int:
    dep = services.deployments.request(command).id
    services.deployments.start_replica(ReplicaCommand(deployment_id=dep, replica="r0", at=T0))
    services.deployments.activate(OnDeployment(deployment_id=dep, at=T0))
    return services.deployments.meter(MeterMinute(deployment_id=dep, minute=T0, at=T0 + M)).amount


@pytest.mark.parametrize("model", ["all-minilm-l6-v2", "whisper-tiny-en", "espeak-ng"])
def test_cpu_media_models_bill_as_small_dedicated(services: Services, model: str) -> None:
    account = _funded(services)
    assert _first_minute(services, RequestDeployment(account_id=account, model=model, at=T0)) == SMALL_MINUTE


def _ready_upload(services: Services, account: UUID, name: str, size: int) -> UUID:
    upload = uuid4()
    services.uploads.open(upload, account, "m.gguf", T0)
    services.uploads.start(upload, T0)
    services.uploads.complete(upload, name=name, deployment_id=None, size_bytes=size, sha256="a" * 64, at=T0)
    return upload


def test_an_uploaded_model_bills_by_its_size_and_only_for_its_account(services: Services) -> None:
    account = _funded(services)
    small = _ready_upload(services, account, "tiny", 98_362_432)
    command = RequestDeployment(account_id=account, model="byom:tiny", upload_id=small, at=T0)
    assert _first_minute(services, command) == SMALL_MINUTE
    medium = _ready_upload(services, account, "big", 20 << 30)
    command = RequestDeployment(account_id=account, model="byom:big", upload_id=medium, at=T0)
    assert _first_minute(services, command) == 3_333  # $0.20/h, medium

    stranger = _funded(services)
    with pytest.raises(errors.InvalidRequest, match="not a ready model upload of this account"):
        services.deployments.request(
            RequestDeployment(account_id=stranger, model="byom:tiny", upload_id=small, at=T0)
        )
    with pytest.raises(errors.InvalidModel):  # byom: without its upload is no catalog model
        services.deployments.request(RequestDeployment(account_id=account, model="byom:tiny", at=T0))
