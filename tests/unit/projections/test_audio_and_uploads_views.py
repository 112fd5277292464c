"""The audio and uploads views: folded from the store's events by the workers' runner, the
same rows whether the events come in one batch or several, and on a replay from scratch."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from modelyard.adapters.eventlog.sources import NotificationLogSource
from modelyard.adapters.views.db import SqliteViews
from modelyard.domain.services import Services
from modelyard.domain.shared.store import Store
from modelyard.domain.usage.service import RecordUsage
from modelyard.projections.audio.projection import AudioProjection
from modelyard.projections.audio.queries import audio_by_model
from modelyard.projections.uploads.projection import UploadsProjection
from modelyard.projections.uploads.queries import ready_upload
from modelyard.workers.projection_runner import ProjectionRunner

T0 = datetime(2026, 6, 1, 12, 0, 5, tzinfo=UTC)
DEPLOYMENT = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def store() -> Iterator[Store]:
    app = Store(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


def _run(store: Store, views: SqliteViews) -> None:
    projections = [AudioProjection(), UploadsProjection()]
    views.ensure([s for p in projections for s in p.schema])
    ProjectionRunner(views, NotificationLogSource(store.recorder), projections).run_until_idle()


def _rows(views: SqliteViews) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with views.transaction() as tx:
        audio = tx.execute("SELECT * FROM audio_minute ORDER BY deployment_id, model, minute")
        uploads = tx.execute("SELECT * FROM model_uploads ORDER BY id")
    return audio, uploads


def _audio(model: str, ms: int, at: datetime = T0) -> RecordUsage:
    return RecordUsage(
        record_id=uuid4(), at=at, deployment_id=DEPLOYMENT, model=model, account_id="acct_1", audio_ms=ms
    )


def test_audio_adds_up_across_batches_and_replays_the_same(store: Store, tmp_path: Path) -> None:
    services = Services.over(store)
    live = SqliteViews(tmp_path / "live.sqlite3")
    services.usage.record([_audio("whisper-tiny-en", 1500), _audio("espeak-ng", 700)])
    _run(store, live)
    services.usage.record([_audio("whisper-tiny-en", 2500), _audio("whisper-tiny-en", 0)])
    services.usage.record([_audio("whisper-tiny-en", 1000, T0 + timedelta(minutes=1))])
    upload = uuid4()
    account = uuid4()
    services.uploads.open(upload, account, "m.gguf", T0)
    services.uploads.start(upload, T0)
    services.uploads.complete(upload, name="mine", deployment_id=None, size_bytes=10, sha256="b" * 64, at=T0)
    _run(store, live)

    with live.transaction() as tx:
        totals = {a.model: (a.requests, a.audio_seconds) for a in audio_by_model(tx, "acct_1")}
        found = ready_upload(tx, f"acct_{account.hex}", "mine")
    assert totals == {"espeak-ng": (1, 0.7), "whisper-tiny-en": (3, 5.0)}  # a 0 ms record is not audio
    assert found is not None
    assert (found.id, found.status, found.size_bytes) == (upload, "ready", 10)

    replayed = SqliteViews(tmp_path / "replayed.sqlite3")
    _run(store, replayed)
    assert _rows(replayed) == _rows(live)
    live.close()
    replayed.close()
