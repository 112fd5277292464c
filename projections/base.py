"""The contract every projection meets, and the transaction port views are written through.

A projection folds domain events into plain SQL tables. The runner (``workers``) hands it
each event inside one view transaction that also advances the projection's tracking row, so
an event is applied exactly once however often it is delivered. SQL is written with ``%s``
placeholders and portable syntax (``INSERT … ON CONFLICT … DO UPDATE``); the SQLite adapter
translates the placeholders.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

#: One event as the runner hands it over, with its notification id.
Positioned = tuple[object, int]


class Tx(Protocol):
    """One open view transaction."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; return its rows (empty for statements without rows)."""
        ...

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per parameter row, in as few round trips as the driver can."""
        ...

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Append rows to ``table`` by the fastest bulk path the database has (COPY on PostgreSQL)."""
        ...


class Projection(Protocol):
    """A read model built only from events."""

    #: Stable name; the tracking rows and the replay compare use it.
    name: str
    #: The tables it owns, in creation order (``CREATE TABLE IF NOT EXISTS …``).
    schema: Sequence[str]
    #: The tables a rebuild empties (drop-and-replay must give the same rows).
    tables: Sequence[str]

    def apply(self, tx: Tx, event: object, position: int) -> None:
        """Fold one domain event into the view; ``position`` is its notification id."""
        ...

    def apply_batch(self, tx: Tx, events: Sequence[Positioned]) -> None:
        """Fold events in order, as ``apply`` one by one would, in fewer statements if it can."""
        ...


class OneByOne:
    """For projections with nothing to gain from batches: ``apply_batch`` is ``apply`` in a loop."""

    def apply(self, tx: Tx, event: object, position: int) -> None:
        """See :class:`Projection`."""
        raise NotImplementedError

    def apply_batch(self, tx: Tx, events: Sequence[Positioned]) -> None:
        """See :class:`Projection`."""
        for event, position in events:
            self.apply(tx, event, position)
