"""When each key last authenticated a request: a fact of the edge, not an event.

Written when an API process looks a key up (at most once per key per cache period, so a
few seconds' precision), kept in the state store, which replay never touches; listing keys
reads it.
"""

from __future__ import annotations

from collections.abc import Iterable

from modelyard.projections.base import Tx

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS key_last_used (
        key_id TEXT PRIMARY KEY,
        used_at TEXT NOT NULL
    )
    """,
)


def touch(tx: Tx, key_id: str, at: str) -> None:
    """Record that ``key_id`` was used at ``at`` (ISO UTC; a later time wins)."""
    tx.execute(
        "INSERT INTO key_last_used (key_id, used_at) VALUES (%s, %s)"
        " ON CONFLICT (key_id) DO UPDATE SET used_at = EXCLUDED.used_at"
        " WHERE key_last_used.used_at < EXCLUDED.used_at",
        [key_id, at],
    )


def last_used(tx: Tx, key_ids: Iterable[str]) -> dict[str, str]:
    """key id -> when it was last used, for those of ``key_ids`` ever used."""
    wanted = sorted(set(key_ids))
    if not wanted:
        return {}
    marks = ", ".join(["%s"] * len(wanted))
    rows = tx.execute(f"SELECT key_id, used_at FROM key_last_used WHERE key_id IN ({marks})", wanted)  # noqa: S608 - only placeholders
    return {str(k): str(at) for k, at in rows}
