"""The write-side application on eventsourcing's in-memory recorder: guards, atomicity, ids.

The same contract runs on SQLite and PostgreSQL in tests/integration/test_application_contract.py;
here the fast cases of every command's refusal, each leaving the store untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from modelyard.domain.accounts.aggregate import CreditsCharged, CreditsExhausted
from modelyard.domain.application import Yard
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.lifecycle import State
from modelyard.domain.keys.aggregate import KeyKind, hash_secret
from modelyard.domain.shared import errors

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
M = timedelta(minutes=1)
SECRET = "whsec_0123456789abcdef"


@pytest.fixture
def yard() -> Iterator[Yard]:
    app = Yard(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


def _funded(yard: Yard, micros: int = 1_000_000) -> UUID:
    account = yard.open_account(name="acme", at=T0)
    yard.add_credits(account, micros, at=T0)
    return account


def _refused(
    yard: Yard, error: type[errors.DomainError], command: Callable[[], object], match: str | None = None
) -> None:
    before = yard.recorder.max_notification_id()
    with pytest.raises(error, match=match):
        command()
    assert yard.recorder.max_notification_id() == before, "a refused command wrote something"


def test_request_deployment_records_the_validated_request(yard: Yard) -> None:
    account = _funded(yard)
    dep = yard.request_deployment(
        account_id=account,
        model="llama3.1-8b",
        capacity=2,
        prefix="dep_",
        name="chat",
        gpu_type="h100",
        region="nyc2",
        preset="cost",
        at=T0,
    )
    deployment = yard.get_deployment(dep)
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
    yard: Yard, request_fields: dict[str, object], error: type[errors.DomainError], match: str
) -> None:
    fields: dict[str, object] = {
        "account_id": _funded(yard),
        "model": "llama3.1-8b",
        "at": T0,
        **request_fields,
    }
    _refused(yard, error, lambda: yard.request_deployment(**fields), match)


def test_the_balance_must_cover_the_first_minute(yard: Yard) -> None:
    broke = yard.open_account(name="broke", at=T0)
    _refused(
        yard,
        errors.InsufficientCredits,
        lambda: yard.request_deployment(account_id=broke, model="smollm2-135m", at=T0),
    )
    # A dedicated small model at 4x costs 150_000 * 3.3 / 60 = 8_250 a minute.
    short = _funded(yard, 8_249)
    _refused(
        yard,
        errors.InsufficientCredits,
        lambda: yard.request_deployment(account_id=short, model="smollm2-135m", capacity=4, at=T0),
        "8250",
    )
    yard.add_credits(short, 1, at=T0)
    assert yard.request_deployment(account_id=short, model="smollm2-135m", capacity=4, at=T0)


def test_unknown_aggregates_are_not_found_of_their_kind(yard: Yard) -> None:
    missing = uuid4()
    _refused(yard, errors.AccountNotFound, lambda: yard.add_credits(missing, 5, at=T0))
    _refused(yard, errors.InstanceNotFound, lambda: yard.activate(missing, at=T0))
    _refused(yard, errors.KeyNotFound, lambda: yard.revoke_key(missing, at=T0))
    _refused(yard, errors.WebhookNotFound, lambda: yard.remove_webhook(missing, at=T0))
    account = _funded(yard)
    dep = yard.request_deployment(account_id=account, model="smollm2-135m", at=T0)
    # One store holds every kind; an id of one kind read as another is simply not found.
    _refused(yard, errors.InstanceNotFound, lambda: yard.get_deployment(account))
    _refused(yard, errors.AccountNotFound, lambda: yard.add_credits(dep, 5, at=T0))
    _refused(yard, errors.KeyNotFound, lambda: yard.revoke_key(dep, at=T0))
    _refused(yard, errors.WebhookNotFound, lambda: yard.remove_webhook(account, at=T0))


def test_bad_credit_amounts_write_nothing(yard: Yard) -> None:
    account = _funded(yard)
    for amount in (0, -5, 2.5):
        _refused(yard, errors.InvalidAmount, lambda a=amount: yard.add_credits(account, a, at=T0))  # type: ignore[misc]
    assert yard.get_account(account).balance == 1_000_000


def test_metering_charges_the_account_in_the_same_transaction(yard: Yard) -> None:
    account = _funded(yard, 3_000)
    dep = yard.request_deployment(account_id=account, model="smollm2-135m", at=T0)
    yard.activate(dep, at=T0)
    before = yard.recorder.max_notification_id() or 0
    assert yard.meter(dep, T0, at=T0 + M) == 2_500
    assert yard.meter(dep, T0 + M, at=T0 + 2 * M) == 2_500
    written = [yard.mapper.to_domain_event(n) for n in yard.recorder.select_notifications(before + 1, 10)]
    assert [type(e).__name__ for e in written] == [
        "MinuteMetered",
        "CreditsCharged",
        "MinuteMetered",
        "CreditsCharged",
        "CreditsExhausted",
    ]
    charged = written[3]
    assert isinstance(charged, CreditsCharged)
    assert (charged.deployment_id, charged.minute, charged.metered_version) == (
        dep,
        T0 + M,
        written[2].originator_version,
    )
    assert isinstance(written[4], CreditsExhausted)
    assert yard.get_account(account).balance == -2_000
    _refused(yard, errors.DuplicateMinute, lambda: yard.meter(dep, T0, at=T0 + 5 * M))


def test_an_idle_minute_writes_nothing_and_costs_nothing(yard: Yard) -> None:
    dep = yard.request_deployment(account_id=_funded(yard), model="smollm2-135m", at=T0)
    before = yard.recorder.max_notification_id()
    assert yard.meter(dep, T0, at=T0 + M) == 0
    assert yard.recorder.max_notification_id() == before


def test_the_lifecycle_through_the_application(yard: Yard) -> None:
    dep = yard.request_deployment(account_id=_funded(yard), model="smollm2-135m", at=T0)
    yard.mark_replica_started(dep, "r0", base_url="http://127.0.0.1:9", at=T0)
    yard.activate(dep, at=T0)
    yard.request_scale(dep, 2, at=T0)
    yard.mark_scaled(dep, 2, at=T0)
    yard.set_autoscaling(dep, ev.Autoscaling(min_replicas=0, max_replicas=2, scale_to_zero=True), at=T0)
    yard.set_sla(dep, ev.SlaTargets(ttft_target_ms=500), at=T0)
    yard.record_sla_breach(dep, "ttft_ms", 900.0, 500.0, at=T0)
    _refused(
        yard,
        errors.InvalidRequest,
        lambda: yard.record_sla_breach(dep, "ttft_ms", float("inf"), 500.0, at=T0),
    )
    yard.record_sla_recovery(dep, "ttft_ms", at=T0)
    yard.mark_replica_lost(dep, "r0", "exit 137", at=T0)
    yard.degrade(dep, "r0 lost", at=T0)
    yard.recover(dep, at=T0)
    yard.scale_to_zero(dep, at=T0)
    _refused(yard, errors.IllegalTransition, lambda: yard.request_scale(dep, 4, at=T0), "scaled_to_zero")
    yard.request_teardown(dep, at=T0)
    yard.mark_destroyed(dep, at=T0)
    deployment = yard.get_deployment(dep)
    assert (deployment.state, deployment.capacity, deployment.version) == (State.DESTROYED, 2, 15)
    assert deployment.autoscaling.scale_to_zero
    assert deployment.sla.ttft_target_ms == 500


def test_a_shared_deployment_cannot_scale(yard: Yard) -> None:
    dep = yard.request_deployment(account_id=_funded(yard), model="smollm2-135m", tier="shared", at=T0)
    yard.activate(dep, at=T0)
    _refused(yard, errors.InvalidCapacity, lambda: yard.request_scale(dep, 2, at=T0), "shared")
    _refused(yard, errors.InvalidCapacity, lambda: yard.request_scale(dep, 5, at=T0))


def test_provision_records_the_deployment_and_its_key_together(yard: Yard) -> None:
    account = _funded(yard)
    dep, key = yard.provision(
        key_hash=hash_secret("auxk_x"), key_display="auxk_x…", account_id=account, model="smollm2-135m", at=T0
    )
    issued = yard.get_key(key)
    assert (issued.kind, issued.deployment_id, issued.account_id) == (KeyKind.INSTANCE, dep, account)
    _refused(
        yard,
        errors.InvalidCapacity,
        lambda: yard.provision(
            key_hash="h", key_display="d", account_id=account, model="smollm2-135m", capacity=7, at=T0
        ),
    )


def test_keys_and_grants(yard: Yard) -> None:
    account = _funded(yard)
    dep = yard.request_deployment(account_id=account, model="smollm2-135m", at=T0)
    _refused(
        yard,
        errors.AccountNotFound,
        lambda: yard.issue_key(
            account_id=uuid4(), kind=KeyKind.MANAGEMENT, secret_hash="h", display="d", at=T0
        ),
    )
    key = yard.issue_key(
        account_id=account, kind=KeyKind.SCOPED, secret_hash=hash_secret("s"), display="…", at=T0
    )
    _refused(yard, errors.InstanceNotFound, lambda: yard.grant_access(key, uuid4(), "inference", at=T0))
    yard.grant_access(key, dep, "inference", at=T0)
    assert yard.get_key(key).grants == {dep: "inference"}
    yard.revoke_access(key, dep, at=T0)
    yard.revoke_key(key, at=T0)
    _refused(yard, errors.InvalidRequest, lambda: yard.revoke_key(key, at=T0), "already revoked")


def test_webhooks_subscribe_and_remove(yard: Yard) -> None:
    account = _funded(yard)
    dep = yard.request_deployment(account_id=account, model="smollm2-135m", at=T0)
    wh = yard.subscribe_webhook(
        dep, url="https://hooks.example.com/x", events=["deployment.active"], secret=SECRET, at=T0
    )
    subscription = yard.get_webhook(wh)
    assert (subscription.account_id, subscription.deployment_id, subscription.events) == (
        account,
        dep,
        ("deployment.active",),
    )
    _refused(
        yard,
        errors.InvalidRequest,
        lambda: yard.subscribe_webhook(
            dep, url="file:///etc/passwd", events=["deployment.active"], secret=SECRET, at=T0
        ),
    )
    _refused(
        yard,
        errors.InstanceNotFound,
        lambda: yard.subscribe_webhook(
            uuid4(), url="https://x.io", events=["deployment.active"], secret=SECRET, at=T0
        ),
    )
    yard.remove_webhook(wh, at=T0)
    assert yard.get_webhook(wh).removed
    yard.request_teardown(dep, at=T0)
    _refused(
        yard,
        errors.InvalidRequest,
        lambda: yard.subscribe_webhook(
            dep, url="https://x.io", events=["deployment.scaled"], secret=SECRET, at=T0
        ),
        "destroyed",
    )


def test_organisation_members_are_accounts(yard: Yard) -> None:
    org, member = _funded(yard), yard.open_account(name="agent", at=T0)
    invoke = ["deployment:invoke"]
    _refused(yard, errors.AccountNotFound, lambda: yard.add_member(org, uuid4(), invoke, at=T0))
    yard.add_member(org, member, ["deployment:invoke"], at=T0)
    assert yard.get_account(org).allows(member, "deployment:invoke")
    yard.remove_member(org, member, at=T0)
    assert yard.get_account(org).members == {}
