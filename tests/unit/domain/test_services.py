"""The application services over one store on eventsourcing's in-memory recorder.

Guards, atomicity, ids and positions: the fast cases of every command's refusal, each
leaving the store untouched. The same contract runs on SQLite and PostgreSQL in
tests/integration/test_application_contract.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from modelyard.domain.accounts import aggregate as accounts
from modelyard.domain.accounts.service import AddCredits, AddMember, OpenAccount, RemoveMember
from modelyard.domain.deployments import commands
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.lifecycle import State
from modelyard.domain.deployments.service import (
    MeterMinute,
    OnDeployment,
    Provision,
    ReplicaCommand,
    RequestDeployment,
    SetAutoscaling,
    SetSla,
    SlaObservation,
    WithCapacity,
    WithReason,
)
from modelyard.domain.keys.aggregate import KeyKind, hash_secret
from modelyard.domain.keys.service import GrantAccess, IssueKey, RevokeAccess, RevokeKey
from modelyard.domain.services import Services
from modelyard.domain.shared import errors
from modelyard.domain.shared.store import Store
from modelyard.domain.usage.service import RecordUsage
from modelyard.domain.webhooks.service import RemoveWebhook, SubscribeWebhook

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


def _funded(services: Services, micros: int = 1_000_000) -> UUID:
    account = services.accounts.open_account(OpenAccount(name="acme", at=T0)).id
    services.accounts.add_credits(AddCredits(account_id=account, amount=micros, at=T0))
    return account


def _deploy(services: Services, account: UUID, model: str = "smollm2-135m", **fields: object) -> UUID:
    command = RequestDeployment(account_id=account, model=model, at=T0, **fields)  # type: ignore[arg-type]
    return services.deployments.request(command).id


def _on(dep: UUID, at: datetime = T0) -> OnDeployment:
    return OnDeployment(deployment_id=dep, at=at)


def _refused(
    store: Store, error: type[errors.DomainError], command: Callable[[], object], match: str | None = None
) -> None:
    before = store.recorder.max_notification_id()
    with pytest.raises(error, match=match):
        command()
    assert store.recorder.max_notification_id() == before, "a refused command wrote something"


def test_request_deployment_records_the_validated_request(services: Services) -> None:
    account = _funded(services)
    dep = _deploy(
        services,
        account,
        "llama3.1-8b",
        capacity=2,
        prefix="dep_",
        name="chat",
        gpu_type="h100",
        region="nyc2",
        preset="cost",
    )
    deployment = services.deployments.get(dep)
    assert (deployment.state, deployment.prefix, deployment.capacity, deployment.size, deployment.tier) == (
        State.PROVISIONING,
        "dep_",
        2,
        "small",
        "dedicated",
    )
    assert (deployment.gpu_type, deployment.region, deployment.preset, deployment.name) == (
        "h100",
        "nyc2",
        "cost",
        "chat",
    )


@pytest.mark.parametrize(
    ("request_fields", "error", "match"),
    [
        ({"model": "gpt-17"}, errors.InvalidModel, "gpt-17"),
        ({"capacity": 3}, errors.InvalidCapacity, "1, 2, 4, or 8"),
        ({"capacity": "2"}, errors.InvalidCapacity, "1, 2, 4, or 8"),
        ({"tier": "shared", "model": "llama-3.3-70b-instruct"}, errors.InvalidRequest, "small models only"),
        ({"tier": "shared", "capacity": 2}, errors.InvalidCapacity, "shared"),
        ({"gpu_type": "h100", "model": "llama-3.3-70b-instruct"}, errors.InvalidRequest, "GiB"),
        ({"region": "mars1"}, errors.InvalidRequest, "region"),
        ({"preset": "turbo"}, errors.InvalidRequest, "preset"),
        ({"account_id": uuid4()}, errors.AccountNotFound, "No account"),
        ({"at": T0.replace(tzinfo=None)}, errors.InvalidRequest, "UTC"),
    ],
)
def test_a_bad_request_is_refused_with_its_code(
    services: Services,
    store: Store,
    request_fields: dict[str, object],
    error: type[errors.DomainError],
    match: str,
) -> None:
    fields: dict[str, object] = {
        "account_id": _funded(services),
        "model": "llama3.1-8b",
        "at": T0,
        **request_fields,
    }
    command = RequestDeployment(**fields)  # type: ignore[arg-type]
    _refused(store, error, lambda: services.deployments.request(command), match)


def test_the_balance_must_cover_the_first_minute(services: Services, store: Store) -> None:
    broke = services.accounts.open_account(OpenAccount(name="broke", at=T0)).id
    _refused(store, errors.InsufficientCredits, lambda: _deploy(services, broke))
    # A dedicated small model at 4x costs 150_000 * 3.3 / 60 = 8_250 a minute.
    short = _funded(services, 8_249)
    _refused(store, errors.InsufficientCredits, lambda: _deploy(services, short, capacity=4), "8250")
    services.accounts.add_credits(AddCredits(account_id=short, amount=1, at=T0))
    assert services.deployments.get(_deploy(services, short, capacity=4)).capacity == 4


def test_unknown_aggregates_are_not_found_of_their_kind(services: Services, store: Store) -> None:
    missing = uuid4()
    _refused(
        store,
        errors.AccountNotFound,
        lambda: services.accounts.add_credits(AddCredits(account_id=missing, amount=5, at=T0)),
    )
    _refused(store, errors.InstanceNotFound, lambda: services.deployments.activate(_on(missing)))
    _refused(store, errors.KeyNotFound, lambda: services.keys.revoke(RevokeKey(key_id=missing, at=T0)))
    _refused(
        store,
        errors.WebhookNotFound,
        lambda: services.webhooks.remove(RemoveWebhook(webhook_id=missing, at=T0)),
    )
    account = _funded(services)
    dep = _deploy(services, account)
    # One store holds every kind; an id of one kind read as another is simply not found.
    _refused(store, errors.InstanceNotFound, lambda: services.deployments.get(account))
    _refused(
        store,
        errors.AccountNotFound,
        lambda: services.accounts.add_credits(AddCredits(account_id=dep, amount=5, at=T0)),
    )
    _refused(store, errors.KeyNotFound, lambda: services.keys.revoke(RevokeKey(key_id=dep, at=T0)))
    _refused(
        store,
        errors.WebhookNotFound,
        lambda: services.webhooks.remove(RemoveWebhook(webhook_id=account, at=T0)),
    )


def test_bad_credit_amounts_write_nothing(services: Services, store: Store) -> None:
    account = _funded(services)
    for amount in (0, -5, 2.5):
        command = AddCredits(account_id=account, amount=amount, at=T0)  # type: ignore[arg-type]
        _refused(store, errors.InvalidAmount, lambda c=command: services.accounts.add_credits(c))  # type: ignore[misc]
    assert services.accounts.get(account).balance == 1_000_000


def test_a_naive_time_is_refused_before_anything_is_written(services: Services, store: Store) -> None:
    account = _funded(services)
    naive = T0.replace(tzinfo=None)
    _refused(
        store,
        errors.InvalidRequest,
        lambda: services.accounts.add_credits(AddCredits(account_id=account, amount=5, at=naive)),
        "UTC",
    )
    _refused(
        store,
        errors.InvalidRequest,
        lambda: services.accounts.open_account(OpenAccount(name="naive", at=naive)),
        "UTC",
    )
    assert services.accounts.get(account).balance == 1_000_000


def test_a_write_raced_by_another_is_a_conflict_and_writes_nothing(services: Services, store: Store) -> None:
    account = _funded(services)
    stale = services.accounts.get(account)
    services.accounts.add_credits(AddCredits(account_id=account, amount=5, at=T0))
    _refused(store, errors.ConcurrencyConflict, lambda: store.record(accounts.add_credits(stale, 7, T0)))
    assert services.accounts.get(account).balance == 1_000_005


def test_every_command_returns_the_position_of_its_last_event(services: Services, store: Store) -> None:
    def last() -> int:
        return store.recorder.max_notification_id() or 0

    opened = services.accounts.open_account(OpenAccount(name="acme", at=T0))
    assert opened.position == last() == 1
    credited = services.accounts.add_credits(AddCredits(account_id=opened.id, amount=10_000, at=T0))
    assert credited == last() == 2
    provisioned = services.deployments.provision(
        Provision(
            deployment=RequestDeployment(account_id=opened.id, model="smollm2-135m", at=T0),
            key_hash=hash_secret("auxk_x"),
            key_display="auxk_x…",
        )
    )
    # Three events in one transaction (the request, its key, the credit it holds): the
    # position is the last one's.
    assert provisioned.position == last() == 5
    started = services.deployments.start_replica(
        ReplicaCommand(deployment_id=provisioned.id, replica="r0", base_url="http://127.0.0.1:9", at=T0)
    )
    assert started == last() == 6
    activated = services.deployments.activate(_on(provisioned.id))
    assert activated == last() == 7
    metered = services.deployments.meter(MeterMinute(deployment_id=provisioned.id, minute=T0, at=T0 + M))
    # The minute and its charge, together.
    assert (metered.amount, metered.position) == (2_500, last())
    assert metered.position == 9
    issued = services.keys.issue(
        IssueKey(account_id=opened.id, kind=KeyKind.SCOPED, secret_hash="h", display="…", at=T0)
    )
    assert issued.position == last() == 10
    usage = [
        RecordUsage(record_id=uuid4(), at=T0, deployment_id=provisioned.id.hex, model="m", account_id="a")
        for _ in range(3)
    ]
    assert services.usage.record(usage) == last() == 13


def test_metering_charges_the_account_in_the_same_transaction(services: Services, store: Store) -> None:
    account = _funded(services, 3_000)
    dep = _deploy(services, account)
    services.deployments.start_replica(ReplicaCommand(deployment_id=dep, replica="r0", at=T0))
    services.deployments.activate(_on(dep))
    before = store.recorder.max_notification_id() or 0
    assert services.deployments.meter(MeterMinute(deployment_id=dep, minute=T0, at=T0 + M)).amount == 2_500
    second = services.deployments.meter(MeterMinute(deployment_id=dep, minute=T0 + M, at=T0 + 2 * M))
    assert second.amount == 2_500
    written = [store.mapper.to_domain_event(n) for n in store.recorder.select_notifications(before + 1, 10)]
    # 500 left after the first minute no longer covers the 2_500 held for the next: exhausted.
    assert [type(e).__name__ for e in written] == [
        "MinuteMetered",
        "CreditsCharged",
        "CreditsExhausted",
        "MinuteMetered",
        "CreditsCharged",
    ]
    charged = written[4]
    assert isinstance(charged, accounts.CreditsCharged)
    assert (charged.deployment_id, charged.minute, charged.metered_version) == (
        dep,
        T0 + M,
        written[3].originator_version,
    )
    assert isinstance(written[2], accounts.CreditsExhausted)
    assert written[2].balance == 500
    assert services.accounts.get(account).balance == -2_000
    _refused(
        store,
        errors.DuplicateMinute,
        lambda: services.deployments.meter(MeterMinute(deployment_id=dep, minute=T0, at=T0 + 5 * M)),
    )


def test_an_idle_minute_writes_nothing_and_costs_nothing(services: Services, store: Store) -> None:
    dep = _deploy(services, _funded(services))
    before = store.recorder.max_notification_id()
    assert services.deployments.meter(MeterMinute(deployment_id=dep, minute=T0, at=T0 + M)).amount == 0
    assert store.recorder.max_notification_id() == before


def test_the_lifecycle_through_the_service(services: Services, store: Store) -> None:
    deployments = services.deployments
    dep = _deploy(services, _funded(services))
    deployments.start_replica(
        ReplicaCommand(deployment_id=dep, replica="r0", base_url="http://127.0.0.1:9", at=T0)
    )
    deployments.activate(_on(dep))
    deployments.request_scale(WithCapacity(deployment_id=dep, capacity=2, at=T0))
    deployments.finish_scale(WithCapacity(deployment_id=dep, capacity=2, at=T0))
    policy = ev.Autoscaling(min_replicas=0, max_replicas=2, scale_to_zero=True)
    deployments.set_autoscaling(SetAutoscaling(deployment_id=dep, policy=policy, at=T0))
    deployments.set_sla(SetSla(deployment_id=dep, targets=ev.SlaTargets(ttft_target_ms=500), at=T0))
    ttft = ev.SlaMetric.TTFT_MS
    deployments.record_sla_breach(
        SlaObservation(deployment_id=dep, metric=ttft, value=900.0, target=500.0, at=T0)
    )
    _refused(
        store,
        errors.InvalidRequest,
        lambda: deployments.record_sla_breach(
            SlaObservation(deployment_id=dep, metric=ttft, value=float("inf"), target=500.0, at=T0)
        ),
    )
    deployments.record_sla_recovery(SlaObservation(deployment_id=dep, metric=ttft, at=T0))
    deployments.lose_replica(ReplicaCommand(deployment_id=dep, replica="r0", reason="exit 137", at=T0))
    deployments.degrade(WithReason(deployment_id=dep, reason="r0 lost", at=T0))
    deployments.recover(_on(dep))
    deployments.scale_to_zero(_on(dep))
    _refused(
        store,
        errors.IllegalTransition,
        lambda: deployments.request_scale(WithCapacity(deployment_id=dep, capacity=4, at=T0)),
        "scaled_to_zero",
    )
    deployments.request_teardown(_on(dep))
    deployments.mark_destroyed(_on(dep))
    deployment = deployments.get(dep)
    assert (deployment.state, deployment.capacity, deployment.version) == (State.DESTROYED, 2, 15)
    assert deployment.autoscaling.scale_to_zero
    assert deployment.sla.ttft_target_ms == 500


def test_a_deployment_that_cannot_start_fails(services: Services) -> None:
    dep = _deploy(services, _funded(services))
    services.deployments.fail_provisioning(WithReason(deployment_id=dep, reason="no GPU", at=T0))
    assert services.deployments.get(dep).state is State.FAILED


def test_a_shared_deployment_cannot_scale(services: Services, store: Store) -> None:
    dep = _deploy(services, _funded(services), tier="shared")
    services.deployments.activate(_on(dep))
    _refused(
        store,
        errors.InvalidCapacity,
        lambda: services.deployments.request_scale(WithCapacity(deployment_id=dep, capacity=2, at=T0)),
        "shared",
    )
    _refused(
        store,
        errors.InvalidCapacity,
        lambda: services.deployments.request_scale(WithCapacity(deployment_id=dep, capacity=5, at=T0)),
    )


def test_provision_records_the_deployment_and_its_key_together(services: Services, store: Store) -> None:
    account = _funded(services)
    provisioned = services.deployments.provision(
        Provision(
            deployment=RequestDeployment(account_id=account, model="smollm2-135m", at=T0),
            key_hash=hash_secret("auxk_x"),
            key_display="auxk_x…",
        )
    )
    issued = services.keys.get(provisioned.key_id)
    assert (issued.kind, issued.deployment_id, issued.account_id) == (
        KeyKind.INSTANCE,
        provisioned.id,
        account,
    )
    assert services.deployments.get(provisioned.id).state is State.PROVISIONING
    bad = Provision(
        deployment=RequestDeployment(account_id=account, model="smollm2-135m", capacity=7, at=T0),
        key_hash="h",
        key_display="d",
    )
    _refused(store, errors.InvalidCapacity, lambda: services.deployments.provision(bad))


def test_events_recorded_together_are_written_together_or_not_at_all(
    services: Services, store: Store
) -> None:
    # What provision relies on: a deployment's request and a second aggregate's event in one
    # record; the second lost a race, so the first, valid on its own, is not written either.
    account = _funded(services)
    stale = services.accounts.get(account)
    services.accounts.add_credits(AddCredits(account_id=account, amount=5, at=T0))
    requested, _ = commands.request_deployment(services.accounts.get(account), model="smollm2-135m", at=T0)
    _refused(
        store,
        errors.ConcurrencyConflict,
        lambda: store.record(requested, accounts.add_credits(stale, 7, T0)),
    )
    _refused(store, errors.InstanceNotFound, lambda: services.deployments.get(requested.originator_id))


def test_keys_and_grants(services: Services, store: Store) -> None:
    account = _funded(services)
    dep = _deploy(services, account)
    _refused(
        store,
        errors.AccountNotFound,
        lambda: services.keys.issue(
            IssueKey(account_id=uuid4(), kind=KeyKind.MANAGEMENT, secret_hash="h", display="d", at=T0)
        ),
    )
    key = services.keys.issue(
        IssueKey(account_id=account, kind=KeyKind.SCOPED, secret_hash=hash_secret("s"), display="…", at=T0)
    ).id
    _refused(
        store,
        errors.InstanceNotFound,
        lambda: services.keys.grant_access(
            GrantAccess(key_id=key, deployment_id=uuid4(), role="inference", at=T0)
        ),
    )
    # Another account's deployment is not found for this key, and nothing is written.
    other = _deploy(services, _funded(services))
    _refused(
        store,
        errors.InstanceNotFound,
        lambda: services.keys.grant_access(
            GrantAccess(key_id=key, deployment_id=other, role="inference", at=T0)
        ),
    )
    services.keys.grant_access(GrantAccess(key_id=key, deployment_id=dep, role="inference", at=T0))
    assert services.keys.get(key).grants == {dep: "inference"}
    services.keys.revoke_access(RevokeAccess(key_id=key, deployment_id=dep, at=T0))
    assert services.keys.get(key).grants == {}
    services.keys.revoke(RevokeKey(key_id=key, at=T0))
    _refused(
        store,
        errors.InvalidRequest,
        lambda: services.keys.revoke(RevokeKey(key_id=key, at=T0)),
        "already revoked",
    )


def _subscribe(
    dep: UUID, url: str = "https://x.io", events: tuple[str, ...] = ("deployment.active",)
) -> SubscribeWebhook:
    return SubscribeWebhook(deployment_id=dep, url=url, events=events, at=T0)


def test_webhooks_subscribe_and_remove(services: Services, store: Store) -> None:
    account = _funded(services)
    dep = _deploy(services, account)
    wh = services.webhooks.subscribe(_subscribe(dep, "https://hooks.example.com/x")).id
    subscription = services.webhooks.get(wh)
    assert (subscription.account_id, subscription.deployment_id, subscription.events) == (
        account,
        dep,
        ("deployment.active",),
    )
    _refused(
        store,
        errors.InvalidRequest,
        lambda: services.webhooks.subscribe(_subscribe(dep, "file:///etc/passwd")),
    )
    _refused(store, errors.InstanceNotFound, lambda: services.webhooks.subscribe(_subscribe(uuid4())))
    services.webhooks.remove(RemoveWebhook(webhook_id=wh, at=T0))
    assert services.webhooks.get(wh).removed
    services.deployments.request_teardown(_on(dep))
    _refused(
        store,
        errors.InvalidRequest,
        lambda: services.webhooks.subscribe(_subscribe(dep, events=("deployment.scaled",))),
        "destroyed",
    )


def test_organisation_members_are_accounts(services: Services, store: Store) -> None:
    org = _funded(services)
    member = services.accounts.open_account(OpenAccount(name="agent", at=T0)).id
    invoke = ("deployment:invoke",)
    _refused(
        store,
        errors.AccountNotFound,
        lambda: services.accounts.add_member(
            AddMember(account_id=org, member_id=uuid4(), permissions=invoke, at=T0)
        ),
    )
    services.accounts.add_member(AddMember(account_id=org, member_id=member, permissions=invoke, at=T0))
    assert services.accounts.get(org).allows(member, "deployment:invoke")
    services.accounts.remove_member(RemoveMember(account_id=org, member_id=member, at=T0))
    assert services.accounts.get(org).members == {}


def test_usage_records_are_written_once_each_and_a_retry_is_refused(services: Services, store: Store) -> None:
    record = RecordUsage(
        record_id=uuid4(), at=T0, deployment_id=uuid4().hex, model="smollm2-135m", account_id="a"
    )
    services.usage.record([record])
    _refused(store, errors.ConcurrencyConflict, lambda: services.usage.record([record]))
    infinite = RecordUsage(
        record_id=uuid4(),
        at=T0,
        deployment_id=uuid4().hex,
        model="m",
        account_id="a",
        latency_ms=float("inf"),
    )
    _refused(store, errors.InvalidRequest, lambda: services.usage.record([infinite]), "finite")
