"""``Store``: the one event-sourced store every context's service writes through.

Every aggregate kind lives in one store with one notification log, so the relay,
projections and the finance replay follow a single ordered history. Saving several
aggregates' events in one ``record`` commits them in one transaction, and eventsourcing's
optimistic concurrency refuses a writer that raced another on the same aggregate
(reported as ``ConcurrencyConflict``; the caller reloads and retries). ``record`` returns
the notification id of the last event written: the position a reader waits for.

A command's cost does not grow with its aggregate's history:

- **the cache**: each store keeps the aggregates it folded (immutable, so shared safely)
  in a bounded LRU. Another process may have written since, so ``load`` always
  fast-forwards a cached aggregate with the events after its version (one indexed read,
  usually empty) before a command decides on it; a command that still loses a race gets
  ``ConcurrencyConflict`` from the store, nothing is written, and it is decided again on
  fresh state. What this store records itself is folded into the cache at once.
- **snapshots**: every ``snapshot_interval`` versions the aggregate's state is put in the
  library's snapshot store (``Application.snapshots``, its own table), after the events
  are committed; a process that has not seen an aggregate starts from its latest snapshot
  and folds only the events after it. A snapshot of an older shape is ignored with a
  warning (``snapshots``); the events alone always give the same state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, TypeVar, cast
from uuid import UUID

import msgspec
from cachetools import LRUCache
from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, PersistenceError
from eventsourcing.utils import get_topic

from modelyard.domain.shared import snapshots
from modelyard.domain.shared.errors import ConcurrencyConflict, DomainError
from modelyard.domain.shared.events import Aggregate, DomainEvent, NotThisAggregate
from modelyard.domain.shared.mapper import MsgspecMapper, NullTranscoder
from modelyard.domain.shared.time import require_utc

A = TypeVar("A", bound=Aggregate)
Projector = Callable[[A | None, Iterable[DomainEvent]], A | None]
log = logging.getLogger(__name__)

# Aggregates a store keeps folded; an account or a deployment is a few kilobytes at most.
CACHE_SIZE = 10_000
# A snapshot every this many versions: a cold load folds at most this many events.
SNAPSHOT_INTERVAL = 100


class Created(msgspec.Struct, frozen=True, kw_only=True):
    """What a command that made a new aggregate returns: its id, and its last event's position."""

    id: UUID
    position: int


class _Cached(msgspec.Struct, frozen=True):
    aggregate: Aggregate
    project: Projector[Any]


class Store(Application[UUID]):
    """Loads aggregates (cached, from a snapshot, or folded), and records new events atomically."""

    # The application's name names its tables: stores written before keep being read.
    name = "modelyard"
    is_snapshotting_enabled = True
    env: ClassVar[dict[str, str]] = {
        "MAPPER_TOPIC": get_topic(MsgspecMapper),
        "TRANSCODER_TOPIC": get_topic(NullTranscoder),
    }

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        cache_size: int = CACHE_SIZE,
        snapshot_interval: int = SNAPSHOT_INTERVAL,
    ) -> None:
        super().__init__(env)
        # cachetools' caches are not thread-safe; commands run in several threads.
        self._lock = threading.Lock()
        self._cache: LRUCache[UUID, _Cached] | None = LRUCache(cache_size) if cache_size > 0 else None
        self._interval = snapshot_interval

    def load(self, aggregate_id: UUID, project: Projector[A], kind: type[A], missing: type[DomainError]) -> A:
        """The aggregate of ``kind`` with this id, as of now, or ``missing`` (an id of another kind too)."""
        cached = self._cached(aggregate_id)
        if cached is not None and not isinstance(cached, kind):
            raise missing(f"No {kind.__name__.lower()} {aggregate_id}.")
        start = cached if cached is not None else self._snapshot(aggregate_id, kind)
        since = 0 if start is None else start.version
        try:
            found = project(
                start, cast(Iterable[DomainEvent], self.events.get(aggregate_id, gt=since or None))
            )
        except NotThisAggregate:
            raise missing(f"No {kind.__name__.lower()} {aggregate_id}.") from None
        if not isinstance(found, kind):
            raise missing(f"No {kind.__name__.lower()} {aggregate_id}.")
        if found is not cached:
            self._keep(found, project, since)
        return found

    def record(self, *events: DomainEvent) -> int:
        """Save events atomically; returns the notification id of the last one.

        Every event's time must be timezone-aware UTC: checked here, once, before anything
        is written, so a naive clock in some caller cannot put a mixed history in the store.
        A lost race becomes ``ConcurrencyConflict``.
        """
        if not events:
            return 0  # nothing to write (a database function would still lock the table)
        for event in events:
            require_utc(event.timestamp, f"time of {type(event).__name__}")
        try:
            recordings = self.save(*events)
        except IntegrityError as exc:
            raise ConcurrencyConflict("Another writer changed this object first; retry.") from exc
        self._advance(events)
        return max((r.notification.id for r in recordings), default=0)

    def peek(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        """The cached copy of an aggregate of ``kind``, maybe behind the store; no I/O.

        Only for what never changes once recorded (which account a deployment bills).
        """
        cached = self._cached(aggregate_id)
        return cached if isinstance(cached, kind) else None

    def forget(self) -> None:
        """Empty the cache (what a fresh process starts with)."""
        with self._lock:
            if self._cache is not None:
                self._cache.clear()

    # --- the cache and the snapshots ------------------------------------------------------

    def _cached(self, aggregate_id: UUID) -> Aggregate | None:
        if self._cache is None:
            return None
        with self._lock:
            entry = self._cache.get(aggregate_id)
        return None if entry is None else entry.aggregate

    def _keep(self, aggregate: Aggregate, project: Projector[Any], since: int) -> None:
        """Cache ``aggregate`` (never over a newer copy), and snapshot it if it passed an interval."""
        if self._cache is not None:
            with self._lock:
                entry = self._cache.get(aggregate.id)
                if entry is None or entry.aggregate.version < aggregate.version:
                    self._cache[aggregate.id] = _Cached(aggregate, project)
        if self._interval > 0 and aggregate.version // self._interval > since // self._interval:
            self._take_snapshot(aggregate)

    def _advance(self, events: Iterable[DomainEvent]) -> None:
        """Fold what this store just committed into the aggregates it has cached."""
        if self._cache is None:
            return
        by_aggregate: dict[UUID, list[DomainEvent]] = {}
        for event in events:
            by_aggregate.setdefault(event.originator_id, []).append(event)
        for aggregate_id, own in by_aggregate.items():
            with self._lock:
                entry = self._cache.get(aggregate_id)
            if entry is None or entry.aggregate.version != own[0].originator_version - 1:
                continue  # not cached, or cached before another writer's events: the next load catches up
            after = entry.project(entry.aggregate, own)
            if after is not None:
                self._keep(after, entry.project, entry.aggregate.version)

    def _snapshot(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        if self.snapshots is None or self._interval <= 0:
            return None
        latest = self.snapshots.recorder.select_events(aggregate_id, desc=True, limit=1)
        return snapshots.restore(latest[0], kind) if latest else None

    def _take_snapshot(self, aggregate: Aggregate) -> None:
        """Put a snapshot in the snapshot store; a failure costs only a longer fold later."""
        if self.snapshots is None:
            return
        try:
            self.snapshots.put([cast(Any, snapshots.take(aggregate))])
        except IntegrityError:
            pass  # another process took this very snapshot first
        except PersistenceError as exc:
            log.warning("could not snapshot %s at version %d: %s", aggregate.id, aggregate.version, exc)
