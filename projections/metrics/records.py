"""The per-request usage record the inference gateway emits.

One record per inference request, saved by the API process that served it into the event
store as an aggregate of its own (version 1, id chosen by the writer). It therefore travels
the same stream as every other event (notification log, relay, Kafka) and a record saved
twice is refused by the store's uniqueness of (id, version): it is counted once.
"""

from __future__ import annotations

import math
from datetime import datetime
from uuid import UUID

from modelyard.domain.shared.events import DomainEvent


class UsageRecorded(DomainEvent, frozen=True, kw_only=True):
    """What one inference request used and how it went."""

    #: The deployment's ``uuid.hex``; records written before that hold its printed ``inst_…`` id.
    deployment_id: str
    model: str
    account_id: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    status: int = 200
    error_code: str | None = None
    key_id: str | None = None
    streamed: bool = False

    @property
    def is_error(self) -> bool:
        """Whether the request failed (any non-2xx answer)."""
        return not 200 <= self.status < 300


def usage_record(*, record_id: UUID, at: datetime, **fields: object) -> UsageRecorded:
    """A new usage record; ``record_id`` is the writer's, so a retry is the same record.

    Stored events are JSON, which has no infinity or NaN: such a latency is refused here
    rather than silently stored as null.
    """
    record = UsageRecorded(originator_id=record_id, originator_version=1, timestamp=at, **fields)  # type: ignore[arg-type]
    if not math.isfinite(record.latency_ms) or (
        record.ttft_ms is not None and not math.isfinite(record.ttft_ms)
    ):
        raise ValueError("latency and TTFT must be finite numbers of milliseconds")
    return record
