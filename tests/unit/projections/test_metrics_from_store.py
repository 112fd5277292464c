"""The metrics view folds the usage records the usage service writes, old and new alike.

The write side runs on eventsourcing's in-memory recorder and the view on a real SQLite
file, read through the runner the workers use. A record stored before the event moved
into ``domain/usage`` names its old module; it must still be read, and counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from modelyard.adapters.eventlog.sources import NotificationLogSource
from modelyard.adapters.views.db import SqliteViews
from modelyard.domain.services import Services
from modelyard.domain.shared.store import Store
from modelyard.domain.usage.events import UsageRecorded
from modelyard.domain.usage.service import RecordUsage
from modelyard.projections.metrics.projection import MetricsProjection
from modelyard.workers.projection_runner import ProjectionRunner

T0 = datetime(2026, 6, 1, 12, 0, 5, tzinfo=UTC)
DEPLOYMENT = "0123456789abcdef0123456789abcdef"
OLD_TOPIC = "modelyard.projections.metrics.records:UsageRecorded"


@pytest.fixture
def store() -> Iterator[Store]:
    app = Store(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


def _rows(store: Store, folder: Path) -> list[tuple[Any, ...]]:
    views = SqliteViews(folder / "views.sqlite3")
    ProjectionRunner(views, NotificationLogSource(store.recorder), [MetricsProjection()]).run_until_idle()
    with views.transaction() as tx:
        rows = tx.execute(
            "SELECT deployment_id, minute, requests, errors, prompt_tokens, completion_tokens"
            " FROM metrics_minute"
        )
    views.close()
    return rows


def _usage(prompt: int, completion: int, status: int = 200) -> RecordUsage:
    return RecordUsage(
        record_id=uuid4(),
        at=T0,
        deployment_id=DEPLOYMENT,
        model="smollm2-135m",
        account_id="acct",
        prompt_tokens=prompt,
        completion_tokens=completion,
        latency_ms=12.5,
        status=status,
    )


def test_records_from_the_usage_service_are_counted_once_each(store: Store, tmp_path: Path) -> None:
    Services.over(store).usage.record([_usage(3, 5), _usage(7, 11), _usage(1, 0, status=500)])
    assert _rows(store, tmp_path) == [(DEPLOYMENT, "2026-06-01T12:00", 3, 1, 11, 16)]


def test_a_record_stored_under_the_old_topic_is_read_and_counted(store: Store, tmp_path: Path) -> None:
    record_id = UUID(int=42)
    state = (
        b'{"originator_id":"00000000-0000-0000-0000-00000000002a","originator_version":1,'
        b'"timestamp":"2026-06-01T12:00:05Z","deployment_id":"' + DEPLOYMENT.encode() + b'",'
        b'"model":"smollm2-135m","account_id":"acct","prompt_tokens":4,"completion_tokens":6,'
        b'"latency_ms":9.0,"ttft_ms":null,"status":200,"error_code":null,"key_id":null,"streamed":false}'
    )
    stored = StoredEvent(originator_id=record_id, originator_version=1, topic=OLD_TOPIC, state=state)
    store.recorder.insert_events([stored])
    decoded = store.mapper.to_domain_event(store.recorder.select_events(record_id)[0])
    assert type(decoded) is UsageRecorded
    Services.over(store).usage.record([_usage(1, 2)])
    assert _rows(store, tmp_path) == [(DEPLOYMENT, "2026-06-01T12:00", 2, 0, 5, 8)]
