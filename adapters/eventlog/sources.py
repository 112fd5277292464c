"""The one consumer interface and its two sources.

``NotificationLogSource`` polls the event store's notification log (the embedded default;
SQLite's recorder cannot push). ``KafkaSource`` is a member of a consumer group on the
relay's topic (cluster mode). Consumers call ``commit`` only after their effect is durable,
and de-duplicate by notification id, so re-delivery after a crash is harmless.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder
from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from modelyard.adapters.eventlog.envelope import EventEnvelope
from modelyard.adapters.eventlog.relay import ensure_topic
from modelyard.adapters.eventstore.recorder import SignallingSQLiteRecorder, appended

log = logging.getLogger(__name__)
# An idle source naps this long between polls of the store: short enough that a command's
# effect reaches the views in tens of milliseconds, long enough to cost nothing when idle.
LOG_POLL_INTERVAL_S = 0.02
# A source whose recorder signals this process's appends polls for others' this often.
SIGNALLED_POLL_INTERVAL_S = 0.2


class EventSource(Protocol):
    """Where a consumer's events come from."""

    def poll(self, max_records: int, timeout_s: float) -> list[EventEnvelope]:
        """Up to ``max_records`` events, waiting at most ``timeout_s`` for the first."""
        ...

    def commit(self, envelopes: Sequence[EventEnvelope]) -> None:
        """Acknowledge events whose effect is durable; they are not delivered again."""
        ...

    def close(self) -> None:
        """Leave the source."""
        ...


class NotificationLogSource:
    """Follows the store's notification log from a position on."""

    def __init__(self, recorder: ApplicationRecorder, *, start_after: int = 0) -> None:
        self._recorder = recorder
        self._after = start_after
        # The embedded default's recorder says when this process appends: wait for that, and
        # look for other processes' appends every ``SIGNALLED_POLL_INTERVAL_S``.
        self._appended = (
            appended(recorder.datastore.pool.db_name)
            if isinstance(recorder, SignallingSQLiteRecorder)
            else None
        )

    def seek(self, after: int) -> None:
        """Continue after notification ``after``."""
        self._after = after

    def poll(self, max_records: int, timeout_s: float) -> list[EventEnvelope]:
        """See :class:`EventSource`."""
        deadline = time.monotonic() + timeout_s
        while True:
            # Read before the select: an append committed after it is then never missed.
            seen = self._appended.count if self._appended is not None else 0
            rows = self._recorder.select_notifications(start=self._after + 1, limit=max_records)
            if rows:
                self._after = rows[-1].id
                return [EventEnvelope.of(row) for row in rows]
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            if self._appended is None:
                time.sleep(LOG_POLL_INTERVAL_S)
            else:
                self._appended.wait(seen, min(left, SIGNALLED_POLL_INTERVAL_S))

    def commit(self, envelopes: Sequence[EventEnvelope]) -> None:
        """Nothing to do: the consumer's tracking rows are its position in the log."""

    def close(self) -> None:
        """Nothing to release; the recorder belongs to the application."""


# How long a Kafka source waits for its topic's partitions before joining anyway.
TOPIC_WAIT_S = 10.0


class _Logged(ConsumerRebalanceListener):  # type: ignore[misc]
    """Logs each rebalance's outcome: which member held which partitions, and when."""

    def __init__(self, group_id: str) -> None:
        self._group = group_id

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        log.info("group %s: partitions %s revoked", self._group, _numbers(revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("group %s: partitions %s assigned", self._group, _numbers(assigned))


def _numbers(partitions: set[TopicPartition]) -> list[int]:
    return sorted(tp.partition for tp in partitions)


class KafkaSource:
    """A member of a consumer group on the events topic; commits offsets explicitly."""

    def __init__(self, bootstrap: str, topic: str, group_id: str) -> None:
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # A consumer that dies should lose its partitions quickly to a live one.
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
        )
        # Join only once the topic's partitions are known. A worker that starts before the
        # relay has made the topic (or before a new topic's partitions are in the metadata)
        # joined a group whose leader could assign no partition.
        ensure_topic(bootstrap, topic)
        deadline = time.monotonic() + TOPIC_WAIT_S
        while not self._consumer.partitions_for_topic(topic) and time.monotonic() < deadline:
            time.sleep(0.1)
        self._consumer.subscribe([topic], listener=_Logged(group_id))

    def poll(self, max_records: int, timeout_s: float) -> list[EventEnvelope]:
        """See :class:`EventSource`."""
        batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        envelopes: list[EventEnvelope] = []
        for partition, records in batches.items():
            for record in records:
                envelopes.append(_envelope(record, partition.partition))
        return envelopes

    def commit(self, envelopes: Sequence[EventEnvelope]) -> None:
        """See :class:`EventSource`."""
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        topic = next(iter(self._consumer.subscription() or []), None)
        if topic is None or not envelopes:
            return
        for envelope in envelopes:
            key = TopicPartition(topic, envelope.partition)
            if key not in offsets or offsets[key].offset <= envelope.offset:
                offsets[key] = OffsetAndMetadata(envelope.offset + 1, "", -1)
        self._consumer.commit(offsets)

    def close(self) -> None:
        """See :class:`EventSource`."""
        self._consumer.close()


def _envelope(record: Any, partition: int) -> EventEnvelope:
    """Rebuild an envelope from a relayed record; a record that is not one is an error."""
    try:
        headers = {name: value.decode() for name, value in record.headers or []}
        return EventEnvelope(
            notification_id=int(headers["notification_id"]),
            originator_id=UUID(record.key.decode()),
            originator_version=int(headers["originator_version"]),
            topic=headers["topic"],
            state=bytes(record.value),
            partition=partition,
            offset=int(record.offset),
        )
    except (KeyError, ValueError, AttributeError) as exc:
        log.error("undecodable record at %s/%s offset %s: %s", record.topic, partition, record.offset, exc)
        raise


class KafkaReplaySource:
    """Reads the whole events topic once, from the first offset to the end it had at start.

    No consumer group: a replay must not move the live consumers' offsets.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        partitions = self._consumer.partitions_for_topic(topic) or set()
        if not partitions:
            self._consumer.close()
            raise ValueError(f"Kafka has no topic {topic!r} yet: is `modelyard worker relay` running?")
        self.partitions = [TopicPartition(topic, p) for p in sorted(partitions)]
        self._consumer.assign(self.partitions)
        self._consumer.seek_to_beginning(*self.partitions)
        self._end = self._consumer.end_offsets(self.partitions)

    def _done(self) -> bool:
        return all(self._consumer.position(tp) >= self._end[tp] for tp in self.partitions)

    def poll(self, max_records: int, timeout_s: float) -> list[EventEnvelope]:
        """See :class:`EventSource`; empty once the end seen at start is reached."""
        if self._done():
            return []
        batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return [
            _envelope(record, tp.partition)
            for tp, records in batches.items()
            for record in records
            if record.offset < self._end[tp]
        ]

    def commit(self, envelopes: Sequence[EventEnvelope]) -> None:
        """Nothing to commit: a replay leaves no trace in the broker."""

    def close(self) -> None:
        """See :class:`EventSource`."""
        self._consumer.close()
