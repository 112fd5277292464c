"""API keys (hashes only, grants for scoped keys) and webhook subscriptions."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from uuid import UUID, uuid4

import msgspec
import pytest

from modelyard.domain.accounts import aggregate as accounts
from modelyard.domain.deployments import commands
from modelyard.domain.deployments.aggregate import Deployment, project_deployment
from modelyard.domain.deployments.lifecycle import State
from modelyard.domain.keys import aggregate as keys
from modelyard.domain.shared.errors import InstanceNotFound, InvalidRequest
from modelyard.domain.webhooks import aggregate as webhooks

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
SECRET = "auxen_live_ab12cd34ef56gh78ij90"


def _key(kind: keys.KeyKind = keys.KeyKind.SCOPED, account_id: UUID | None = None) -> keys.ApiKey:
    deployment_id = uuid4() if kind is keys.KeyKind.INSTANCE else None
    issued = keys.issue_key(
        account_id=account_id or uuid4(),
        kind=kind,
        secret_hash=keys.hash_secret(SECRET),
        display=keys.display_of(SECRET),
        at=T0,
        deployment_id=deployment_id,
    )
    key = keys.project_key(None, [issued])
    assert key is not None
    return key


def test_a_key_is_stored_by_its_sha256_and_shown_by_its_start() -> None:
    assert keys.hash_secret(SECRET) == hashlib.sha256(SECRET.encode()).hexdigest()
    assert keys.display_of(SECRET) == "auxen_live_ab12…"
    assert keys.display_of("auxk_9f_8e7d6c5b4a") == "auxk_9f_8…"
    assert keys.display_of("sk-elsewhere-123") == "…"
    key = _key(keys.KeyKind.MANAGEMENT)
    assert SECRET not in repr(key)
    assert key.secret_hash == keys.hash_secret(SECRET)


def test_an_instance_key_and_only_an_instance_key_names_its_deployment() -> None:
    assert _key(keys.KeyKind.INSTANCE).deployment_id is not None
    with pytest.raises(InvalidRequest, match="instance key"):
        keys.issue_key(account_id=uuid4(), kind=keys.KeyKind.INSTANCE, secret_hash="h", display="d", at=T0)
    with pytest.raises(InvalidRequest, match="instance key"):
        keys.issue_key(
            account_id=uuid4(),
            kind=keys.KeyKind.MANAGEMENT,
            secret_hash="h",
            display="d",
            at=T0,
            deployment_id=uuid4(),
        )


def test_a_key_is_revoked_once() -> None:
    key = _key()
    revoked = keys.project_key(key, [keys.revoke_key(key, T0)])
    assert revoked is not None
    assert revoked.revoked
    with pytest.raises(InvalidRequest, match="already revoked"):
        keys.revoke_key(revoked, T0)


def test_a_scoped_key_reaches_only_what_was_granted() -> None:
    deployment = _deployment()
    key = _key(account_id=deployment.account_id)
    granted = keys.project_key(key, [keys.grant_access(key, deployment, "inference", T0)])
    assert granted is not None
    assert granted.grants == {deployment.id: "inference"}
    withdrawn = keys.project_key(granted, [keys.revoke_access(granted, deployment.id, T0)])
    assert withdrawn is not None
    assert withdrawn.grants == {}
    with pytest.raises(InvalidRequest, match="no access"):
        keys.revoke_access(withdrawn, deployment.id, T0)


def test_a_key_is_never_granted_another_account_s_deployment() -> None:
    deployment = _deployment()
    with pytest.raises(InstanceNotFound, match=str(deployment.id)):
        keys.grant_access(_key(), deployment, "inference", T0)


@pytest.mark.parametrize(
    ("kind", "role", "match"),
    [
        (keys.KeyKind.MANAGEMENT, "inference", "scoped keys only"),
        (keys.KeyKind.INSTANCE, "inference", "scoped keys only"),
        (keys.KeyKind.SCOPED, "admin", "Unknown role"),
    ],
)
def test_grants_are_for_scoped_keys_and_the_inference_role(kind: keys.KeyKind, role: str, match: str) -> None:
    deployment = _deployment()
    with pytest.raises(InvalidRequest, match=match):
        keys.grant_access(_key(kind, deployment.account_id), deployment, role, T0)


def _deployment() -> Deployment:
    """A provisioning deployment of a funded account, folded from its events."""
    opened = accounts.open_account(name="acme", plan="free", at=T0)
    account = accounts.project_account(None, [opened])
    assert account is not None
    funded = accounts.project_account(account, [accounts.add_credits(account, 1_000_000, T0)])
    assert funded is not None
    deployment = project_deployment(
        None, [commands.request_deployment(funded, model="smollm2-135m", at=T0).requested]
    )
    assert deployment is not None
    return deployment


def _subscription(deployment: Deployment | None = None, **overrides: object) -> webhooks.WebhookSubscribed:
    fields: dict[str, object] = {
        "url": "https://hooks.example.com/ainative?x=1",
        "events": ["deployment.scaled", "deployment.active", "deployment.active"],
        "at": T0,
    }
    return webhooks.subscribe_webhook(deployment or _deployment(), **{**fields, **overrides})  # type: ignore[arg-type]


def test_a_subscription_keeps_its_events_in_the_documents_order() -> None:
    deployment = _deployment()
    event = _subscription(deployment)
    # The subscription belongs to the deployment's account, taken from the deployment itself.
    assert (event.account_id, event.deployment_id) == (deployment.account_id, deployment.id)
    assert event.events == ("deployment.active", "deployment.scaled")
    subscription = webhooks.project_webhook(None, [event])
    assert subscription is not None
    assert subscription.wants("deployment.active")
    assert not subscription.wants("deployment.degraded")


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://example.com/x",
        "example.com/hook",
        "https://",
        "https://exa mple.com",
        "https://x/" + "a" * 2048,
    ],
)
def test_a_webhook_url_is_an_absolute_http_url(url: str) -> None:
    with pytest.raises(InvalidRequest, match="absolute http"):
        _subscription(url=url)


@pytest.mark.parametrize(
    "events", [[], "deployment.active", ["deployment.deleted"], None, ["deployment.active", 3]]
)
def test_webhook_events_are_a_non_empty_list_of_known_names(events: object) -> None:
    with pytest.raises(InvalidRequest, match="events"):
        _subscription(events=events)


def test_a_subscription_carries_no_secret_into_the_history() -> None:
    # The signing secret lives in the state store; the events topic is kept forever.
    event = _subscription()
    assert event.secret == ""
    assert b"secret" not in msgspec.json.encode(event)


@pytest.mark.parametrize("ending", [State.TEARDOWN, State.DESTROYED])
def test_a_deployment_being_destroyed_takes_no_new_subscription(ending: State) -> None:
    deployment = _deployment()
    ended = project_deployment(deployment, [commands.request_teardown(deployment, T0)])
    assert ended is not None
    if ending is State.DESTROYED:
        ended = project_deployment(ended, [commands.mark_destroyed(ended, T0)])
        assert ended is not None
    assert ended.state is ending
    with pytest.raises(InvalidRequest, match="being destroyed"):
        _subscription(ended)


def test_a_removed_subscription_wants_nothing_and_is_removed_once() -> None:
    subscription = webhooks.project_webhook(None, [_subscription()])
    assert subscription is not None
    removed = webhooks.project_webhook(subscription, [webhooks.remove_webhook(subscription, T0)])
    assert removed is not None
    assert removed.removed
    assert removed.version == 2
    assert not removed.wants("deployment.active")
    with pytest.raises(InvalidRequest, match="already removed"):
        webhooks.remove_webhook(removed, T0)
