"""Events stored before the enum-typed fields still decode, into the enums.

The fixture is what the mapper wrote before this change (``size``, ``tier``, ``preset``,
``plan``, ``kind``, ``role`` and ``metric`` were plain strings then): one event of every
kind, copied byte for byte. Decoding them with today's classes must give the same facts,
typed, and encoding them again must give the same bytes (msgspec writes a StrEnum as its
value), so a store written by either version reads the same.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import msgspec
import pytest
from eventsourcing.persistence import StoredEvent

from modelyard.domain.accounts import aggregate as accounts
from modelyard.domain.billing.pricing import Tier
from modelyard.domain.catalog.hardware import Preset
from modelyard.domain.catalog.models import Plan, Size
from modelyard.domain.deployments import aggregate as deployments
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.lifecycle import State
from modelyard.domain.keys import aggregate as keys
from modelyard.domain.shared.events import DomainEvent
from modelyard.domain.shared.mapper import MsgspecMapper, NullTranscoder
from modelyard.domain.webhooks import aggregate as webhooks

DEPLOYMENT = UUID("2f8e3c1a9b2d4e5f8a7b6c5d4e3f2a12")
# (topic, state) as the mapper stored them before events had enum-typed fields.
STORED: tuple[tuple[str, bytes], ...] = (
    (
        "modelyard.domain.accounts.aggregate:AccountOpened",
        b'{"originator_id":"0f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a10","originator_version":1,"timestamp":"2026-05-01T09:00:07.250000Z","name":"Acme","plan":"professional"}',
    ),
    (
        "modelyard.domain.accounts.aggregate:CreditsAdded",
        b'{"originator_id":"0f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a10","originator_version":2,"timestamp":"2026-05-01T09:00:07.250000Z","amount":10000000}',
    ),
    (
        "modelyard.domain.accounts.aggregate:CreditsCharged",
        b'{"originator_id":"0f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a10","originator_version":3,"timestamp":"2026-05-01T09:00:07.250000Z","deployment_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","minute":"2026-05-01T09:00:00Z","amount":2500,"metered_version":4}',
    ),
    (
        "modelyard.domain.accounts.aggregate:CreditsExhausted",
        b'{"originator_id":"0f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a10","originator_version":4,"timestamp":"2026-05-01T09:00:07.250000Z","balance":-12}',
    ),
    (
        "modelyard.domain.accounts.aggregate:MemberAdded",
        b'{"originator_id":"0f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a10","originator_version":5,"timestamp":"2026-05-01T09:00:07.250000Z","member_id":"1f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a11","permissions":["deployment:invoke","deployment:manage"]}',
    ),
    (
        "modelyard.domain.accounts.aggregate:MemberRemoved",
        b'{"originator_id":"0f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a10","originator_version":6,"timestamp":"2026-05-01T09:00:07.250000Z","member_id":"1f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a11"}',
    ),
    # Holds of credit for live deployments, as first stored.
    (
        "modelyard.domain.accounts.aggregate:CreditReserved",
        b'{"originator_id":"0f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a10","originator_version":7,"timestamp":"2026-05-01T09:00:07.250000Z","deployment_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","amount":8250,"replicas":4}',
    ),
    (
        "modelyard.domain.accounts.aggregate:CreditReleased",
        b'{"originator_id":"0f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a10","originator_version":8,"timestamp":"2026-05-01T09:00:07.250000Z","deployment_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12"}',
    ),
    (
        "modelyard.domain.deployments.events:DeploymentRequested",
        b'{"originator_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","originator_version":1,"timestamp":"2026-05-01T09:00:07.250000Z","account_id":"0f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a10","prefix":"dep_","name":"chat","model":"llama3.1-8b","size":"small","tier":"dedicated","capacity":2,"gpu_type":"h100","region":"nyc2","preset":"cost"}',
    ),
    (
        "modelyard.domain.deployments.events:ReplicaStarted",
        b'{"originator_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","originator_version":2,"timestamp":"2026-05-01T09:00:07.250000Z","replica":"r0","base_url":"http://127.0.0.1:9001"}',
    ),
    (
        "modelyard.domain.deployments.events:DeploymentActivated",
        b'{"originator_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","originator_version":3,"timestamp":"2026-05-01T09:00:07.250000Z"}',
    ),
    (
        "modelyard.domain.deployments.events:MinuteMetered",
        b'{"originator_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","originator_version":4,"timestamp":"2026-05-01T09:00:07.250000Z","account_id":"0f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a10","minute":"2026-05-01T09:00:00Z","seconds":53,"amount":3975,"parts":[{"seconds":53,"capacity":2,"multiplier_tenths":18}]}',
    ),
    (
        "modelyard.domain.deployments.events:ScaleRequested",
        b'{"originator_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","originator_version":5,"timestamp":"2026-05-01T09:00:07.250000Z","capacity":4}',
    ),
    (
        "modelyard.domain.deployments.events:ScaledTo",
        b'{"originator_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","originator_version":6,"timestamp":"2026-05-01T09:00:07.250000Z","capacity":4}',
    ),
    (
        "modelyard.domain.deployments.events:DeploymentDegraded",
        b'{"originator_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","originator_version":7,"timestamp":"2026-05-01T09:00:07.250000Z","reason":"1 of 4 replicas down"}',  # noqa: E501
    ),
    (
        "modelyard.domain.deployments.events:ReplicaLost",
        b'{"originator_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","originator_version":8,"timestamp":"2026-05-01T09:00:07.250000Z","replica":"r0","reason":"process exited"}',  # noqa: E501
    ),
    (
        "modelyard.domain.deployments.events:DeploymentRecovered",
        b'{"originator_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","originator_version":9,"timestamp":"2026-05-01T09:00:07.250000Z"}',
    ),
    (
        "modelyard.domain.deployments.events:AutoscalingSet",
        b'{"originator_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","originator_version":10,"timestamp":"2026-05-01T09:00:07.250000Z","policy":{"min_replicas":0,"max_replicas":4,"scale_to_zero":true,"idle_timeout_seconds":120}}',
    ),
    (
        "modelyard.domain.deployments.events:SlaTargetsSet",
        b'{"originator_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","originator_version":11,"timestamp":"2026-05-01T09:00:07.250000Z","targets":{"ttft_target_ms":500,"throughput_target_tps":40,"concurrency_limit":8}}',
    ),
    (
        "modelyard.domain.deployments.events:SlaBreached",
        b'{"originator_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","originator_version":12,"timestamp":"2026-05-01T09:00:07.250000Z","metric":"ttft_ms","value":912.5,"target":500.0}',
    ),
    (
        "modelyard.domain.deployments.events:SlaRecovered",
        b'{"originator_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","originator_version":13,"timestamp":"2026-05-01T09:00:07.250000Z","metric":"ttft_ms"}',
    ),
    (
        "modelyard.domain.deployments.events:ScaledToZero",
        b'{"originator_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","originator_version":14,"timestamp":"2026-05-01T09:00:07.250000Z"}',
    ),
    (
        "modelyard.domain.deployments.events:WakeRequested",
        b'{"originator_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","originator_version":15,"timestamp":"2026-05-01T09:00:07.250000Z"}',
    ),
    (
        "modelyard.domain.deployments.events:ProvisioningFailed",
        b'{"originator_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","originator_version":15,"timestamp":"2026-05-01T09:00:07.250000Z","reason":"no host fits"}',  # noqa: E501
    ),
    (
        "modelyard.domain.deployments.events:CapacityAwaited",
        b'{"originator_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","originator_version":15,"timestamp":"2026-05-01T09:00:07.250000Z","reason":"waiting for capacity: no room"}',  # noqa: E501
    ),
    (
        "modelyard.domain.deployments.events:TeardownRequested",
        b'{"originator_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","originator_version":16,"timestamp":"2026-05-01T09:00:07.250000Z"}',
    ),
    (
        "modelyard.domain.deployments.events:Destroyed",
        b'{"originator_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","originator_version":17,"timestamp":"2026-05-01T09:00:07.250000Z"}',
    ),
    (
        "modelyard.domain.keys.aggregate:KeyIssued",
        b'{"originator_id":"3f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a13","originator_version":1,"timestamp":"2026-05-01T09:00:07.250000Z","account_id":"0f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a10","kind":"scoped","secret_hash":"abababababababababababababababababababababababababababababababab","display":"auxk_abcd\xe2\x80\xa6","deployment_id":null}',
    ),
    (
        "modelyard.domain.keys.aggregate:AccessGranted",
        b'{"originator_id":"3f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a13","originator_version":2,"timestamp":"2026-05-01T09:00:07.250000Z","deployment_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","role":"inference"}',
    ),
    (
        "modelyard.domain.keys.aggregate:AccessRevoked",
        b'{"originator_id":"3f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a13","originator_version":3,"timestamp":"2026-05-01T09:00:07.250000Z","deployment_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12"}',
    ),
    # Names of keys, since they could be named.
    (
        "modelyard.domain.keys.aggregate:KeyNamed",
        b'{"originator_id":"3f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a13","originator_version":2,"timestamp":"2026-05-01T09:00:07.250000Z","name":"ci"}',
    ),
    (
        "modelyard.domain.keys.aggregate:KeyRevoked",
        b'{"originator_id":"3f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a13","originator_version":4,"timestamp":"2026-05-01T09:00:07.250000Z"}',
    ),
    (
        "modelyard.domain.webhooks.aggregate:WebhookSubscribed",
        b'{"originator_id":"4f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a14","originator_version":1,"timestamp":"2026-05-01T09:00:07.250000Z","account_id":"0f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a10","deployment_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","url":"https://hooks.example.com/x","events":["deployment.active","deployment.sla_breach"],"secret":"0123456789abcdef"}',
    ),
    (
        "modelyard.domain.webhooks.aggregate:WebhookRemoved",
        b'{"originator_id":"4f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a14","originator_version":2,"timestamp":"2026-05-01T09:00:07.250000Z"}',
    ),
    # The low-balance policy and what a deployment allows, as first stored.
    (
        "modelyard.domain.accounts.aggregate:LowBalancePolicySet",
        b'{"originator_id":"0f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a10","originator_version":20,"timestamp":"2026-05-01T09:00:07.250000Z","policy":{"notify_below":3000000,"degrade_below":1000000}}',
    ),
    (
        "modelyard.domain.deployments.events:LowBalanceAllowanceSet",
        b'{"originator_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","originator_version":40,"timestamp":"2026-05-01T09:00:07.250000Z","on_low_balance":"cheaper_preset"}',
    ),
    (
        "modelyard.domain.deployments.events:PresetChanged",
        b'{"originator_id":"2f8e3c1a-9b2d-4e5f-8a7b-6c5d4e3f2a12","originator_version":41,"timestamp":"2026-05-01T09:00:07.250000Z","preset":"cost","reason":"low-balance","held_from":"balanced"}',
    ),
)
MAPPER = MsgspecMapper(transcoder=NullTranscoder())


def _decoded() -> list[DomainEvent]:
    events = []
    for topic, state in STORED:
        originator_id, version = _origin(state)
        stored = StoredEvent(
            originator_id=originator_id, originator_version=version, topic=topic, state=state
        )
        event = MAPPER.to_domain_event(stored)
        assert isinstance(event, DomainEvent)
        events.append(event)
    return events


def _origin(state: bytes) -> tuple[UUID, int]:
    head = msgspec.json.decode(state, type=dict[str, object])
    return UUID(str(head["originator_id"])), int(str(head["originator_version"]))


@pytest.mark.parametrize(("topic", "state"), STORED, ids=[t.rsplit(":", 1)[1] for t, _ in STORED])
def test_an_old_stored_event_decodes_and_encodes_to_the_same_bytes(topic: str, state: bytes) -> None:
    originator_id, version = _origin(state)
    stored = StoredEvent(originator_id=originator_id, originator_version=version, topic=topic, state=state)
    event = MAPPER.to_domain_event(stored)
    assert MAPPER.to_stored_event(event) == stored


def test_old_string_fields_decode_into_their_enums() -> None:
    by_type = {type(event): event for event in _decoded()}
    requested = by_type[ev.DeploymentRequested]
    assert isinstance(requested, ev.DeploymentRequested)
    assert (requested.size, requested.tier, requested.preset) == (Size.SMALL, Tier.DEDICATED, Preset.COST)
    assert type(requested.size) is Size
    assert type(requested.tier) is Tier
    assert type(requested.preset) is Preset
    opened = by_type[accounts.AccountOpened]
    assert isinstance(opened, accounts.AccountOpened)
    assert type(opened.plan) is Plan
    assert opened.plan is Plan.PROFESSIONAL
    issued = by_type[keys.KeyIssued]
    assert isinstance(issued, keys.KeyIssued)
    assert issued.kind is keys.KeyKind.SCOPED
    granted = by_type[keys.AccessGranted]
    assert isinstance(granted, keys.AccessGranted)
    assert granted.role is keys.Role.INFERENCE
    for cls in (ev.SlaBreached, ev.SlaRecovered):
        sla = by_type[cls]
        assert isinstance(sla, ev.SlaBreached | ev.SlaRecovered)
        assert sla.metric is ev.SlaMetric.TTFT_MS


def test_the_fixture_holds_every_event_kind_of_the_domain() -> None:
    modules = (ev, accounts, keys, webhooks)
    every = {
        cls
        for module in modules
        for cls in vars(module).values()
        if isinstance(cls, type) and issubclass(cls, DomainEvent) and cls is not DomainEvent
    }
    assert {type(event) for event in _decoded()} == every


def test_old_events_fold_into_the_aggregates() -> None:
    events = _decoded()
    account = accounts.project_account(None, [e for e in events if isinstance(e, accounts.AccountOpened)])
    assert account is not None
    assert account.plan is Plan.PROFESSIONAL
    deployment_events = [e for e in events if e.originator_id == DEPLOYMENT]
    # The fixture lists one of each kind, not a legal history; fold the legal prefix of it.
    legal = [e for e in deployment_events if e.originator_version <= 9]
    deployment = deployments.project_deployment(None, legal)
    assert deployment is not None
    assert (deployment.state, deployment.capacity, deployment.size, deployment.tier) == (
        State.RUNNING,
        4,
        Size.SMALL,
        Tier.DEDICATED,
    )
    assert deployment.last_metered == datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def test_fields_added_later_decode_from_old_events_and_round_trip_when_set() -> None:
    by_type = {type(event): event for event in _decoded()}
    lost = by_type[ev.ReplicaLost]
    metered = by_type[ev.MinuteMetered]
    assert isinstance(lost, ev.ReplicaLost)
    assert isinstance(metered, ev.MinuteMetered)
    # Stored before billing followed the serving replicas: no loss time, the whole capacity.
    assert lost.lost_at is None
    assert [part.serving for part in metered.parts] == [None]
    newer = (
        msgspec.structs.replace(lost, lost_at=datetime(2026, 5, 1, 8, 59, 30, tzinfo=UTC)),
        msgspec.structs.replace(
            metered, parts=(ev.MeteredPart(seconds=53, capacity=2, multiplier_tenths=18, serving=1),)
        ),
    )
    for event in newer:
        assert MAPPER.to_domain_event(MAPPER.to_stored_event(event)) == event
