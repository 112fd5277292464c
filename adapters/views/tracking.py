"""Projection tracking: how far each projection got, per source partition.

The rows live in the views database and move in the same transaction as the view rows
they account for, so an event is applied exactly once; a rebuild empties both together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from modelyard.projections.base import Tx


def tracked(tx: Tx, projection: str) -> dict[int, int]:
    """A projection's position per source partition."""
    rows = tx.execute(
        "SELECT partition, position FROM projection_tracking WHERE projection = %s", [projection]
    )
    return {int(partition): int(position) for partition, position in rows}


def advance(tx: Tx, projection: str, moved: Mapping[int, int]) -> None:
    """Record the new positions of a projection, per partition, in the caller's transaction."""
    tx.executemany(
        "INSERT INTO projection_tracking (projection, partition, position)"
        " VALUES (%s, %s, %s) ON CONFLICT (projection, partition)"
        " DO UPDATE SET position = EXCLUDED.position",
        [[projection, partition, position] for partition, position in moved.items()],
    )


def empty(tx: Tx, projection: str, tables: Sequence[str]) -> None:
    """Delete a projection's rows and its tracking, so the next run replays from the start."""
    for table in tables:
        tx.execute(f"DELETE FROM {table}")  # noqa: S608 - table names are code, not input
    tx.execute("DELETE FROM projection_tracking WHERE projection = %s", [projection])
