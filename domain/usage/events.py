"""The per-request usage record: one event per inference request.

Saved by the API process that served the request into the event store as an aggregate of
its own (version 1, id chosen by the writer), it travels the same stream as every other
event (notification log, relay, Kafka); a record saved twice is refused by the store's
uniqueness of (id, version), so it is counted once.
"""

from __future__ import annotations

from eventsourcing.utils import register_topic

from modelyard.domain.shared.events import DomainEvent


class UsageRecorded(DomainEvent, frozen=True, kw_only=True):
    """What one inference request used and how it went."""

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
    # A routed call's target (``deployment:<id>`` or ``upstream:<name>``); None for a direct call.
    route: str | None = None
    # What the call cost beyond the deployment's minutes: an upstream's per-token price.
    cost_micros: int = 0
    # Milliseconds of audio transcribed or spoken (the usage of an audio model; 0 for text).
    audio_ms: int = 0

    @property
    def is_error(self) -> bool:
        """Whether the request failed (any non-2xx answer)."""
        return not 200 <= self.status < 300


# Records stored before the event moved into the domain name it by its old module.
register_topic("modelyard.projections.metrics.records:UsageRecorded", UsageRecorded)
