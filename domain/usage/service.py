"""The usage service: record what inference requests used, many in one transaction."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import msgspec

from modelyard.domain.shared.errors import InvalidRequest
from modelyard.domain.shared.store import Store
from modelyard.domain.usage.events import UsageRecorded


class RecordUsage(msgspec.Struct, frozen=True, kw_only=True):
    """Record one request's usage; ``record_id`` is the writer's, so a retry is the same record."""

    record_id: UUID
    at: datetime
    deployment_id: str
    model: str
    account_id: str
    key_id: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    status: int = 200
    error_code: str | None = None
    streamed: bool = False
    # A routed call's target (``deployment:<id>`` or ``upstream:<name>``); None for a direct call.
    route: str | None = None
    # What the call cost beyond the deployment's minutes: an upstream's per-token price.
    cost_micros: int = 0
    # Milliseconds of audio transcribed or spoken (the usage of an audio model; 0 for text).
    audio_ms: int = 0


def usage_recorded(command: RecordUsage) -> UsageRecorded:
    """The event of one usage record.

    Stored events are JSON, which has no infinity or NaN: such a latency is refused here
    rather than silently stored as null.
    """
    if not math.isfinite(command.latency_ms) or (
        command.ttft_ms is not None and not math.isfinite(command.ttft_ms)
    ):
        raise InvalidRequest("latency and TTFT must be finite numbers of milliseconds")
    if command.audio_ms < 0:
        raise InvalidRequest("audio_ms must not be negative")
    fields = msgspec.structs.asdict(command)
    record_id, at = fields.pop("record_id"), fields.pop("at")
    return UsageRecorded(originator_id=record_id, originator_version=1, timestamp=at, **fields)


class UsageService:
    """Records usage; the gateway hands it batches so the store sees one write per batch."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def record(self, commands: Sequence[RecordUsage]) -> int:
        """Record every command's usage in one transaction; returns the last position."""
        return self._store.record(*(usage_recorded(c) for c in commands))
