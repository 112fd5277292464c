"""Fit: a deployment no placement on the cluster can serve is refused at once, with the reason,
and nothing is recorded."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.catalog.fit import HostCapacity, check_fit
from modelyard.domain.catalog.hardware import Preset
from modelyard.domain.catalog.models import find_model
from modelyard.domain.deployments.service import RequestDeployment
from modelyard.domain.services import Services
from modelyard.domain.shared import errors
from modelyard.domain.shared.store import Store

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def store() -> Iterator[Store]:
    app = Store(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


CPU_ONLY = HostCapacity(cpu_models=frozenset({"smollm2-135m"}))
ONE_H100 = HostCapacity(cpu_models=frozenset({"smollm2-135m"}), gpu_types=frozenset({"h100"}))


def _fit(host: HostCapacity, model: str, **fields: object) -> None:
    gpu = fields.get("gpu_type")
    region = fields.get("region")
    preset = Preset(str(fields.get("preset", "balanced")))
    check_fit(find_model(model), host, gpu_type=gpu, region=region, preset=preset)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("host", "model", "fields", "error", "match"),
    [
        (CPU_ONLY, "llama3.1-8b", {}, errors.ProvisioningFailed, "needs a GPU"),
        (CPU_ONLY, "smollm2-135m", {"gpu_type": "h100"}, errors.ProvisioningFailed, "Omit gpu_type"),
        (ONE_H100, "llama3.1-8b", {"gpu_type": "mi300x"}, errors.ProvisioningFailed, "No mi300x"),
        (ONE_H100, "llama-4-maverick", {}, errors.ProvisioningFailed, "large enough"),
        (ONE_H100, "llama-3.3-70b-instruct", {"gpu_type": "h100"}, errors.InvalidRequest, "142 GiB|170 GiB"),
        (ONE_H100, "llama3.1-8b", {"gpu_type": "a100"}, errors.InvalidRequest, "Unknown gpu_type"),
        (ONE_H100, "llama3.1-8b", {"region": "mars1"}, errors.InvalidRequest, "Unknown region"),
        (
            HostCapacity(gpu_types=frozenset({"h100"}), regions=frozenset({"nyc2"})),
            "llama3.1-8b",
            {"region": "tor1"},
            errors.ProvisioningFailed,
            "No capacity in region tor1",
        ),
        (
            HostCapacity(simulated=True, regions=frozenset({"atl1"})),
            "llama3.1-8b",
            {"region": "ric1"},
            errors.ProvisioningFailed,
            "region ric1",
        ),
    ],
)
def test_what_cannot_be_placed_is_refused_with_the_reason(
    host: HostCapacity, model: str, fields: dict[str, object], error: type[errors.DomainError], match: str
) -> None:
    with pytest.raises(error, match=match) as refused:
        _fit(host, model, **fields)
    assert refused.value.message


@pytest.mark.parametrize(
    ("host", "model", "fields"),
    [
        (CPU_ONLY, "smollm2-135m", {}),
        (CPU_ONLY, "smollm2-135m", {"region": "nyc2"}),
        (ONE_H100, "llama3.1-8b", {}),
        (ONE_H100, "llama3.1-8b", {"gpu_type": "h100", "preset": "speed"}),
        (ONE_H100, "gemma-2-27b-it", {"gpu_type": "h100", "preset": "cost"}),  # fits in 80 GiB as int8
        (HostCapacity(simulated=True), "llama-3.3-70b-instruct", {"gpu_type": "mi300x", "region": "nyc2"}),
    ],
)
def test_what_can_be_placed_passes(host: HostCapacity, model: str, fields: dict[str, object]) -> None:
    _fit(host, model, **fields)


def test_a_host_naming_what_the_catalog_lacks_is_refused() -> None:
    with pytest.raises(errors.InvalidRequest, match="a100"):
        HostCapacity(gpu_types=frozenset({"a100"}))
    with pytest.raises(errors.InvalidRequest, match="mars1"):
        HostCapacity(regions=frozenset({"mars1"}))


def test_the_service_refuses_before_recording_anything(store: Store) -> None:
    services = Services.over(store, host=CPU_ONLY)
    account = services.accounts.open_account(OpenAccount(name="a", plan="free", at=T0)).id
    services.accounts.add_credits(AddCredits(account_id=account, amount=5_000_000, at=T0))
    before = store.recorder.max_notification_id()
    chosen = uuid4()
    command = RequestDeployment(account_id=account, model="llama3.1-8b", deployment_id=chosen, at=T0)
    with pytest.raises(errors.ProvisioningFailed, match="needs a GPU"):
        services.deployments.request(command)
    assert store.recorder.max_notification_id() == before
    with pytest.raises(errors.InstanceNotFound):
        services.deployments.get(chosen)
    ok = RequestDeployment(account_id=account, model="smollm2-135m", at=T0)
    assert services.deployments.get(services.deployments.request(ok).id).model == "smollm2-135m"


def test_a_cluster_placing_by_gpu_type_refuses_a_missing_or_busy_type() -> None:
    # A Ray cluster: its nodes advertise h100 and mi300x; every h100 is taken right now.
    cluster = HostCapacity(
        gpu_types=frozenset({"h100", "mi300x"}), typed_nodes=True, free_gpu_types=frozenset({"mi300x"})
    )
    _fit(cluster, "llama3.1-8b", gpu_type="mi300x")
    with pytest.raises(
        errors.ProvisioningFailed, match="Every h100 GPU on this cluster is in use; free now: mi300x"
    ):
        _fit(cluster, "llama3.1-8b", gpu_type="h100")
    # Simulated replicas take no GPU, but still land only on a node of the named type.
    simulated = HostCapacity(simulated=True, gpu_types=frozenset({"h100"}), typed_nodes=True)
    _fit(simulated, "smollm2-135m", gpu_type="h100")
    _fit(simulated, "smollm2-135m")
    with pytest.raises(errors.ProvisioningFailed, match="No mi300x GPU on this cluster"):
        _fit(simulated, "smollm2-135m", gpu_type="mi300x")
    # Without typed nodes the simulated engine serves any type (control-plane tests).
    _fit(HostCapacity(simulated=True), "smollm2-135m", gpu_type="mi300x")


def test_the_service_reads_a_live_capacity_on_each_request(store: Store) -> None:
    seen = [ONE_H100]
    services = Services.over(store, host=lambda: seen[0])
    account = services.accounts.open_account(OpenAccount(name="a", plan="free", at=T0)).id
    services.accounts.add_credits(AddCredits(account_id=account, amount=5_000_000, at=T0))
    on_h100 = RequestDeployment(account_id=account, model="llama3.1-8b", gpu_type="h100", at=T0)
    services.deployments.request(on_h100)
    seen[0] = CPU_ONLY  # the GPU node left the cluster
    with pytest.raises(errors.ProvisioningFailed, match="No h100 GPU on this cluster"):
        services.deployments.request(on_h100)
