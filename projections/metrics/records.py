"""The per-request usage record the inference gateway emits.

One record per inference request, written by the API process that served it to the usage
log (an append-only table beside the event store, relayed to the Kafka topic
``<events topic>.usage`` in cluster mode). Its ``record_id`` is chosen by the writer, so a
record delivered twice is recognised and counted once.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

USAGE_TOPIC_SUFFIX = ".usage"


class UsageRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What one inference request used and how it went."""

    record_id: UUID
    deployment_id: str
    model: str
    account_id: str
    at: datetime
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


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(UsageRecord)


def encode_usage(record: UsageRecord) -> bytes:
    """The record as the usage log and Kafka carry it."""
    return _encoder.encode(record)


def decode_usage(data: bytes) -> UsageRecord:
    """The inverse of :func:`encode_usage`."""
    return _decoder.decode(data)
