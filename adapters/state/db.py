"""Opening the state store: the views' transaction machinery over the state's own tables."""

from __future__ import annotations

import time

from modelyard.adapters.ratelimit.limiter import SCHEMA as RATE_LIMIT_SCHEMA
from modelyard.adapters.state import idempotency, key_use, positions, secrets, upstreams, webhooks
from modelyard.adapters.views.db import PostgresViews, SqliteViews
from modelyard.settings import Settings, StoreKind

#: Every table of the state store, created when it is opened.
SCHEMA = (
    *idempotency.SCHEMA,
    *secrets.SCHEMA,
    *positions.SCHEMA,
    *upstreams.SCHEMA,
    *webhooks.SCHEMA,
    *key_use.SCHEMA,
)
#: Per table, the columns added since it first shipped (a store made before lacks them).
ADDED_COLUMNS = {"idempotency": idempotency.ADDED_COLUMNS, "instance_secrets": secrets.ADDED_COLUMNS}
#: The state store's file in the data directory, beside (never inside) ``views.sqlite3``.
SQLITE_FILE = "state.sqlite3"
# The state sees a write per command and per rate-limited request, not per event: a small
# pool is plenty beside the views' own.
POOL_SIZE = 4


def open_state(settings: Settings) -> SqliteViews | PostgresViews:
    """The state store of the configured mode, its tables created (and brought up to date).

    On SQLite a file of its own, where a forgotten secret leaves no trace (``forgetful``);
    on PostgreSQL the same database as the views, in tables no projection owns (so
    ``ProjectionRunner.rebuild`` and the finance replay never touch them), the rate-limit
    windows among them.
    """
    state: SqliteViews | PostgresViews
    if settings.store is StoreKind.SQLITE:
        state = SqliteViews(settings.data_dir / SQLITE_FILE, schema=SCHEMA, forgetful=True)
    else:
        schema = (*SCHEMA, RATE_LIMIT_SCHEMA)
        state = PostgresViews(settings.postgres.conninfo, max_size=POOL_SIZE, schema=schema)
    add_columns(state)
    return state


def add_columns(state: SqliteViews | PostgresViews) -> None:
    """Columns added to tables that a store made before may lack; old records adopted.

    Idempotent: every process opening the state runs it.
    """
    if isinstance(state, PostgresViews):
        state.ensure(
            [
                f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {kind}"
                for table, columns in ADDED_COLUMNS.items()
                for name, kind in columns.items()
            ]
        )
    else:
        with state.transaction() as tx:
            for table, columns in ADDED_COLUMNS.items():
                present = {str(row[1]) for row in tx.execute(f"PRAGMA table_info({table})")}
                for name, kind in columns.items():
                    if name not in present:
                        tx.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
    with state.transaction() as tx:
        idempotency.adopt_old_records(tx, now=time.time())
