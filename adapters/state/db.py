"""Opening the state store: the views' transaction machinery over the state's own tables."""

from __future__ import annotations

from modelyard.adapters.ratelimit.limiter import SCHEMA as RATE_LIMIT_SCHEMA
from modelyard.adapters.state import idempotency, positions, secrets
from modelyard.adapters.views.db import PostgresViews, SqliteViews
from modelyard.settings import Settings, StoreKind

#: Every table of the state store, created when it is opened.
SCHEMA = (*idempotency.SCHEMA, *secrets.SCHEMA, *positions.SCHEMA)
#: The state store's file in the data directory, beside (never inside) ``views.sqlite3``.
SQLITE_FILE = "state.sqlite3"
# The state sees a write per command and per rate-limited request, not per event: a small
# pool is plenty beside the views' own.
POOL_SIZE = 4


def open_state(settings: Settings) -> SqliteViews | PostgresViews:
    """The state store of the configured mode, its tables created.

    On SQLite a file of its own; on PostgreSQL the same database as the views, in tables no
    projection owns (so ``ProjectionRunner.rebuild`` and the finance replay never touch them),
    the rate-limit windows among them.
    """
    if settings.store is StoreKind.SQLITE:
        return SqliteViews(settings.data_dir / SQLITE_FILE, schema=SCHEMA)
    return PostgresViews(settings.postgres.conninfo, max_size=POOL_SIZE, schema=(*SCHEMA, RATE_LIMIT_SCHEMA))
