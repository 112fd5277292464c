"""Snapshots: an aggregate's folded state at one version, kept beside its events.

A snapshot only shortens a fold: the events stay the one source of truth, and the replay
and the projections never read a snapshot. Each carries its aggregate's *shape*, a digest
of the aggregate class's schema (its fields and their types) and of its
``snapshot_revision``; a snapshot whose shape is not the class's current one, or that does
not decode, is ignored with a warning and the aggregate is folded from its first event.
An aggregate whose fold changes meaning without changing fields bumps its
``snapshot_revision``, so every snapshot taken under the old meaning is ignored.
"""

from __future__ import annotations

import hashlib
import logging
from functools import cache
from typing import TypeVar
from uuid import UUID

import msgspec
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import TopicError, get_topic, resolve_topic

from modelyard.domain.shared.events import Aggregate, DomainEvent

log = logging.getLogger(__name__)
A = TypeVar("A", bound=Aggregate)


class Snapshot(DomainEvent, frozen=True, kw_only=True):
    """The state of aggregate ``originator_id`` after its event ``originator_version``."""

    kind: str  # the aggregate class's topic
    shape: str  # ``shape_of(kind)`` when the snapshot was taken
    state: msgspec.Raw  # the aggregate, as msgspec JSON


@cache
def shape_of(kind: type[Aggregate]) -> str:
    """A digest of ``kind``'s schema and revision: changes whenever its stored form does."""
    schema = msgspec.json.encode(msgspec.json.schema(kind), order="sorted")
    revision = str(kind.snapshot_revision).encode()
    return hashlib.sha256(schema + b"/" + revision).hexdigest()[:32]


_encoder = msgspec.json.Encoder()


def take(aggregate: Aggregate) -> Snapshot:
    """A snapshot of ``aggregate`` as it is now."""
    kind = type(aggregate)
    return Snapshot(
        originator_id=aggregate.id,
        originator_version=aggregate.version,
        timestamp=aggregate.modified_on,
        kind=get_topic(kind),
        shape=shape_of(kind),
        state=msgspec.Raw(_encoder.encode(aggregate)),
    )


def restore(stored: StoredEvent, kind: type[A]) -> A | None:
    """The aggregate a stored snapshot holds, or None (with a warning) if it cannot be used.

    None when the snapshot is of another kind (the caller then finds the id is not one of
    ``kind`` from its events), of an older shape, or does not decode: nothing is lost, the
    caller folds the events from the first.
    """
    aggregate_id: UUID | str = stored.originator_id
    try:
        snapshot = msgspec.json.decode(stored.state, type=resolve_topic(stored.topic))
        if not isinstance(snapshot, Snapshot):
            raise TypeError(f"{stored.topic} is not a snapshot")
        if snapshot.kind != get_topic(kind):
            return None
        if snapshot.shape != shape_of(kind):
            log.warning(
                "snapshot of %s %s at version %d was taken by an older shape; folding its events instead",
                kind.__name__,
                aggregate_id,
                stored.originator_version,
            )
            return None
        aggregate = msgspec.json.decode(snapshot.state, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError, TopicError, TypeError, ValueError) as exc:
        log.warning(
            "snapshot of %s %s at version %d does not decode (%s); folding its events instead",
            kind.__name__,
            aggregate_id,
            stored.originator_version,
            exc,
        )
        return None
    if aggregate.id != stored.originator_id or aggregate.version != stored.originator_version:
        log.warning(
            "snapshot of %s %s names another version; folding its events instead", kind.__name__, aggregate_id
        )
        return None
    return aggregate
