"""One stored event in transit: what every source yields and the relay sends."""

from __future__ import annotations

from uuid import UUID

import msgspec
from eventsourcing.persistence import Notification

from modelyard.domain.shared.mapper import decode_event


class EventEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    """A stored event with its place in the log and in the source it came through."""

    notification_id: int
    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes
    # Kafka partition and offset; the notification log is partition 0 at offset = id.
    partition: int = 0
    offset: int = 0

    @classmethod
    def of(cls, notification: Notification) -> EventEnvelope:
        """The envelope of one row of the store's notification log."""
        return cls(
            notification_id=notification.id,
            originator_id=UUID(str(notification.originator_id)),
            originator_version=notification.originator_version,
            topic=notification.topic,
            state=notification.state,
            offset=notification.id,
        )

    def decode(self) -> object:
        """The domain event (or usage record) inside."""
        return decode_event(self.topic, self.state)
