"""The gateway's usage writer: a batch saved ``FLUSH_S`` after its first record, in one
transaction; the rest at shutdown; and an idle writer that does not wake."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from modelyard.api.gateway.usage import FLUSH_S, UsageWriter
from modelyard.domain.shared.store import Store
from modelyard.domain.usage.service import RecordUsage, UsageService

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(sqlite_store: Store) -> Store:
    return sqlite_store


class Batches(UsageService):
    """The real service, keeping the size of each batch it was handed."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.sizes: list[int] = []

    def record(self, commands: Sequence[RecordUsage]) -> int:
        self.sizes.append(len(commands))
        return super().record(commands)


class Flushes(UsageWriter):
    """The writer, counting how often it flushed (found something queued or not)."""

    flushes = 0

    async def flush(self) -> None:
        self.flushes += 1
        await super().flush()


def _record() -> RecordUsage:
    return RecordUsage(
        record_id=uuid.uuid4(),
        at=T0,
        deployment_id=uuid.uuid4().hex,
        model="smollm2-135m",
        account_id="acct_1",
        key_id="key_1",
        prompt_tokens=3,
        completion_tokens=5,
        latency_ms=12.0,
        status=200,
    )


def _saved(store: Store) -> int:
    notes = store.recorder.select_notifications(start=1, limit=1000)
    return sum(1 for n in notes if n.topic.endswith(":UsageRecorded"))


async def _written(store: Store, service: Batches) -> tuple[int, int, list[int]]:
    writer = Flushes(service)
    running = asyncio.create_task(writer.run())
    await asyncio.sleep(10 * FLUSH_S)
    idle_flushes = writer.flushes
    for _ in range(3):
        writer.submit(_record())
    await asyncio.sleep(4 * FLUSH_S)
    saved_in_time = _saved(store)
    writer.submit(_record())
    writer.stop()
    await asyncio.wait_for(running, timeout=5)
    return idle_flushes, saved_in_time, service.sizes


def test_records_are_saved_a_batch_at_a_time_and_an_idle_writer_sleeps(store: Store) -> None:
    service = Batches(store)
    idle_flushes, saved_in_time, sizes = asyncio.run(_written(store, service))
    assert idle_flushes == 0
    assert saved_in_time == 3
    assert sizes == [3, 1]
    assert _saved(store) == 4
