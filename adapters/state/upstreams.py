"""Accounts' own upstream providers: the OpenAI-compatible servers their routed chats may use.

Each holds an API key, a secret: so they live in the state store beside the other secrets
replay never touches, not in events; an upstream's key is never shown back (only a hint).
Putting one under a name the account already uses replaces it.
"""

from __future__ import annotations

import time

import msgspec

from modelyard.adapters.engines.upstream import Upstream
from modelyard.projections.base import Tx

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS account_upstreams (
        account_id TEXT NOT NULL,
        name TEXT NOT NULL,
        upstream TEXT NOT NULL,
        added_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (account_id, name)
    )
    """,
)


def put(tx: Tx, account_id: str, upstream: Upstream) -> None:
    """Keep ``upstream`` for the account, replacing one of the same name (keeping its place)."""
    tx.execute(
        "INSERT INTO account_upstreams (account_id, name, upstream, added_at) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (account_id, name) DO UPDATE SET upstream = EXCLUDED.upstream",
        [account_id, upstream.name, msgspec.json.encode(upstream).decode(), time.time()],
    )


def remove(tx: Tx, account_id: str, name: str) -> bool:
    """Forget the account's upstream of that name; whether there was one."""
    found = tx.execute(
        "SELECT 1 FROM account_upstreams WHERE account_id = %s AND name = %s", [account_id, name]
    )
    tx.execute("DELETE FROM account_upstreams WHERE account_id = %s AND name = %s", [account_id, name])
    return bool(found)


def of_account(tx: Tx, account_id: str) -> list[Upstream]:
    """The account's upstreams, in the order they were first added."""
    rows = tx.execute(
        "SELECT upstream FROM account_upstreams WHERE account_id = %s ORDER BY added_at, name", [account_id]
    )
    return [msgspec.json.decode(str(row[0]).encode(), type=Upstream) for row in rows]
