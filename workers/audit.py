"""Finance replay: rebuild balances and ledger from the first event and compare with live.

The scratch copy receives exactly the events the live views have applied (per source
partition, every notification id up to the live tracking position), so a difference is a
real one, never lag. It reads either the store's notification log or the Kafka topic.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from modelyard.adapters.eventlog.envelope import EventEnvelope
from modelyard.adapters.eventlog.partitions import TopicPartitions
from modelyard.adapters.eventlog.sources import EventSource, KafkaReplaySource, NotificationLogSource
from modelyard.adapters.views.db import SqliteViews, ViewDatabase
from modelyard.adapters.views.tracking import tracked
from modelyard.domain.shared.store import Store
from modelyard.projections.balances.projection import BalancesProjection
from modelyard.projections.balances.queries import AUDITED, audited_rows
from modelyard.settings import Settings
from modelyard.workers.projection_runner import ProjectionRunner

# Events per replay transaction: the balances projection costs a few statements per batch,
# so larger batches go faster; past a few thousand they only add memory.
REPLAY_BATCH = 2000


class ReplayReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a replay found."""

    source: str
    events: int
    accounts: int
    differences: list[str]

    @property
    def identical(self) -> bool:
        """Whether the rebuilt views equal the live ones row for row."""
        return not self.differences


class _UpTo:
    """Passes on only what the live views have applied, numbered by partition."""

    def __init__(self, inner: EventSource, live: dict[int, int], partition_of: Any) -> None:
        self._inner, self._live, self._partition_of = inner, live, partition_of
        self.passed = 0

    def poll(self, max_records: int, timeout_s: float) -> list[EventEnvelope]:
        batch = self._inner.poll(max_records, timeout_s)
        kept = [e for e in batch if e.notification_id <= self._live.get(self._partition_of(e), 0)]
        self.passed += len(kept)
        # An empty poll means the source is exhausted; a batch filtered to nothing is not.
        return kept if kept or not batch else self.poll(max_records, timeout_s)

    def commit(self, envelopes: Sequence[EventEnvelope]) -> None:
        self._inner.commit(envelopes)

    def close(self) -> None:
        self._inner.close()


def _dump(views: ViewDatabase) -> dict[str, set[tuple[Any, ...]]]:
    with views.transaction() as tx:
        return audited_rows(tx)


def replay(settings: Settings, store: Store, live: ViewDatabase, *, source: str = "store") -> ReplayReport:
    """Rebuild balances and ledger into a scratch database and compare them with ``live``."""
    with live.transaction() as tx:
        positions = tracked(tx, BalancesProjection.name)
    inner, partition_of = _source(settings, store, source)
    with tempfile.TemporaryDirectory(prefix="modelyard-audit-") as scratch_dir:
        scratch = SqliteViews(Path(scratch_dir) / "scratch.sqlite3")
        filtered = _UpTo(inner, positions, partition_of)
        ProjectionRunner(scratch, filtered, [BalancesProjection()]).run_until_idle(
            timeout_s=1.0, max_records=REPLAY_BATCH
        )
        filtered.close()
        rebuilt, current = _dump(scratch), _dump(live)
        scratch.close()
    differences = [
        f"{table}: {'only live' if row in current[table] else 'only rebuilt'} {row}"
        for table in AUDITED
        for row in sorted(current[table] ^ rebuilt[table], key=repr)
    ]
    return ReplayReport(
        source=source, events=filtered.passed, accounts=len(rebuilt["balances"]), differences=differences
    )


def _source(settings: Settings, store: Store, source: str) -> tuple[EventSource, Any]:
    kafka_tracked = settings.uses_kafka
    if source == "kafka":
        if not settings.uses_kafka:
            raise ValueError("--source kafka needs MODELYARD_KAFKA_BOOTSTRAP (cluster mode)")
        replay_source = KafkaReplaySource(settings.kafka_bootstrap, settings.kafka_topic)
        return replay_source, lambda e: e.partition
    if source != "store":
        raise ValueError(f"unknown source {source!r}; store or kafka")
    if not kafka_tracked:
        return NotificationLogSource(store.recorder), lambda e: 0
    partitions = TopicPartitions(settings.kafka_bootstrap, settings.kafka_topic)

    def partition_of(envelope: EventEnvelope) -> int:
        # The partition the relay's producer put the aggregate's events in.
        return partitions.of(envelope.originator_id)

    return NotificationLogSource(store.recorder), partition_of
