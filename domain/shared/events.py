"""The base of every domain event and of every aggregate's state.

Events are frozen msgspec Structs: immutable facts, named in the past tense, evolved only
by adding fields with defaults. The timestamp is always passed in by the caller; the
domain never reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import ClassVar, TypeVar
from uuid import UUID

import msgspec


class DomainEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A fact about one aggregate, at one version, at one moment."""

    originator_id: UUID
    originator_version: int
    timestamp: datetime


class NotThisAggregate(TypeError):
    """An event folded into an aggregate of another kind: the id names something else.

    One store holds every kind, so a well-formed id of one kind read as another reaches a
    mutator that does not know the event; the application turns this into a not-found.
    """


class Aggregate(msgspec.Struct, frozen=True, kw_only=True):
    """The state an aggregate's events fold into."""

    # Bumped when what the events fold into changes meaning without changing its fields:
    # snapshots taken before are then ignored (see ``snapshots``).
    snapshot_revision: ClassVar[int] = 0

    id: UUID
    version: int
    created_on: datetime
    modified_on: datetime


A = TypeVar("A", bound=Aggregate)


def projector(
    mutate: Callable[[DomainEvent, A | None], A | None],
) -> Callable[[A | None, Iterable[DomainEvent]], A | None]:
    """Turn a one-event mutator into the projector ``Repository.get`` folds with."""

    def project(aggregate: A | None, events: Iterable[DomainEvent]) -> A | None:
        for event in events:
            aggregate = mutate(event, aggregate)
        return aggregate

    return project


def touched(aggregate: A, event: DomainEvent, **changes: object) -> A:
    """The aggregate after ``event``: new version and modification time, plus ``changes``."""
    return msgspec.structs.replace(
        aggregate, version=event.originator_version, modified_on=event.timestamp, **changes
    )
