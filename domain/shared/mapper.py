"""Stored events are the msgspec JSON of the event Struct, found again by its topic."""

from __future__ import annotations

from typing import Any, cast

import msgspec
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder
from eventsourcing.utils import get_topic, resolve_topic

_encoder = msgspec.json.Encoder()


class MsgspecMapper(Mapper):  # type: ignore[type-arg]
    """Maps frozen msgspec events to stored events and back, with no transcoder."""

    def to_stored_event(self, domain_event: DomainEventProtocol[Any]) -> StoredEvent:
        """Encode one event."""
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=get_topic(type(domain_event)),
            state=_encoder.encode(domain_event),
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[Any]:
        """Decode one stored event into its class."""
        cls = resolve_topic(stored_event.topic)
        return cast(DomainEventProtocol[Any], msgspec.json.decode(stored_event.state, type=cls))


def decode_event(topic: str, state: bytes) -> object:
    """Decode an event from its topic and stored bytes (as the relay and Kafka carry them)."""
    return msgspec.json.decode(state, type=resolve_topic(topic))


class NullTranscoder(Transcoder):
    """The mapper encodes by itself; eventsourcing still wants a transcoder object."""

    def encode(self, obj: Any) -> bytes:
        """Unused."""
        return b""

    def decode(self, data: bytes) -> Any:
        """Unused."""
        return None
