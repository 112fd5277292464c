"""Named positions in the store's notification log (the relay's: how far Kafka has it)."""

from __future__ import annotations

from modelyard.projections.base import Tx

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS relay_position (
        name TEXT PRIMARY KEY,
        position BIGINT NOT NULL
    )
    """,
)


def position(tx: Tx, name: str) -> int:
    """The last notification id recorded under ``name`` (0 before the first)."""
    rows = tx.execute("SELECT position FROM relay_position WHERE name = %s", [name])
    return int(rows[0][0]) if rows else 0


def record(tx: Tx, name: str, at: int) -> None:
    """Move the position ``name`` to notification id ``at``."""
    tx.execute(
        "INSERT INTO relay_position (name, position) VALUES (%s, %s)"
        " ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position",
        [name, at],
    )
