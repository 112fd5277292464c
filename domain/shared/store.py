"""``Store``: the one event-sourced store every context's service writes through.

Every aggregate kind lives in one store with one notification log, so the relay,
projections and the finance replay follow a single ordered history. Saving several
aggregates' events in one ``record`` commits them in one transaction, and eventsourcing's
optimistic concurrency refuses a writer that raced another on the same aggregate
(reported as ``ConcurrencyConflict``; the caller reloads and retries). ``record`` returns
the notification id of the last event written: the position a reader waits for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import ClassVar, TypeVar
from uuid import UUID

import msgspec
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from modelyard.domain.shared.errors import ConcurrencyConflict, DomainError
from modelyard.domain.shared.events import Aggregate, DomainEvent, NotThisAggregate
from modelyard.domain.shared.mapper import MsgspecMapper, NullTranscoder
from modelyard.domain.shared.time import require_utc

A = TypeVar("A", bound=Aggregate)
Projector = Callable[[A | None, Iterable[DomainEvent]], A | None]


class Created(msgspec.Struct, frozen=True, kw_only=True):
    """What a command that made a new aggregate returns: its id, and its last event's position."""

    id: UUID
    position: int


class Store(Application[UUID]):
    """Loads aggregates by folding their events, and records new events atomically."""

    # The application's name names its tables: stores written before keep being read.
    name = "modelyard"
    env: ClassVar[dict[str, str]] = {
        "MAPPER_TOPIC": get_topic(MsgspecMapper),
        "TRANSCODER_TOPIC": get_topic(NullTranscoder),
    }

    def load(self, aggregate_id: UUID, project: Projector[A], kind: type[A], missing: type[DomainError]) -> A:
        """The aggregate of ``kind`` with this id, or ``missing`` (an id of another kind too)."""
        try:
            found = self.repository.get(aggregate_id, projector_func=project)
        except (AggregateNotFoundError, NotThisAggregate):
            raise missing(f"No {kind.__name__.lower()} {aggregate_id}.") from None
        if not isinstance(found, kind):
            raise missing(f"No {kind.__name__.lower()} {aggregate_id}.")
        return found

    def record(self, *events: DomainEvent) -> int:
        """Save events atomically; returns the notification id of the last one.

        Every event's time must be timezone-aware UTC: checked here, once, before anything
        is written, so a naive clock in some caller cannot put a mixed history in the store.
        A lost race becomes ``ConcurrencyConflict``.
        """
        for event in events:
            require_utc(event.timestamp, f"time of {type(event).__name__}")
        try:
            recordings = self.save(*events)
        except IntegrityError as exc:
            raise ConcurrencyConflict("Another writer changed this object first; retry.") from exc
        return max((r.notification.id for r in recordings), default=0)
