"""The recorders: PostgreSQL's in one round trip per append with notification ids in commit
order, and SQLite's that wakes this process's log readers when it appends.

eventsourcing's recorder appends in a pipelined transaction (BEGIN, lock, NOTIFY,
INSERT, then COMMIT): two or three waits on the server per command. Its database-function
path is one statement in autocommit, one wait, but its function does not lock the table,
so two writers could commit out of the order of their notification ids and a reader
tailing the log (the relay, the projections) could pass an id that is committed later.
This recorder's function takes the same ``EXCLUSIVE`` table lock eventsourcing's pipelined
path takes, so each append gets its ids and commits before the next one gets any: the
log is read in commit order, one round trip per append. Enabled by ``store_env`` with
``POSTGRES_ENABLE_DB_FUNCTIONS``.

SQLite cannot push, so the embedded default's log readers (the views, the webhook
dispatcher) polled it every 20 ms: a few per cent of a core, idle or not, on the same
cores as a CPU replica. ``SignallingSQLiteRecorder`` tells ``appended(db)`` after each
commit, so a reader in this process wakes at once for this process's appends and polls
slowly otherwise (for other processes' appends: the CLI, a second server).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.sql import SQL, Identifier


class Appended:
    """A count of appends to one database from this process, and a wait for the next one."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.count = 0

    def notify(self) -> None:
        """An append committed: wake every waiter."""
        with self._changed:
            self.count += 1
            self._changed.notify_all()

    def wait(self, seen: int, timeout_s: float) -> None:
        """Return once the count is past ``seen`` (at once if it already is), or after ``timeout_s``."""
        with self._changed:
            self._changed.wait_for(lambda: self.count != seen, timeout_s)


_appended: dict[str, Appended] = {}
_appended_lock = threading.Lock()


def appended(db_name: str) -> Appended:
    """The signal of appends to the SQLite database ``db_name`` in this process."""
    with _appended_lock:
        return _appended.setdefault(db_name, Appended())


class SignallingSQLiteRecorder(SQLiteApplicationRecorder):
    """eventsourcing's SQLite application recorder, telling ``appended`` after each commit."""

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Insert and commit, then wake this process's readers of the log."""
        ids = super().insert_events(stored_events, **kwargs)
        appended(self.datastore.pool.db_name).notify()
        return ids


class OrderedPostgresRecorder(PostgresApplicationRecorder):
    """eventsourcing's application recorder, appending through a function that locks first."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        # A name of its own: eventsourcing's default function (no lock) keeps its name.
        self.pg_function_name_insert_events = f"{events_table_name}_append_in_order"
        schema, table = Identifier(datastore.schema), Identifier(events_table_name)
        function = Identifier(self.pg_function_name_insert_events)
        self.sql_invoke_pg_function_insert_events = SQL("SELECT * FROM {schema}.{function}((%s))").format(
            schema=schema, function=function
        )
        self.sql_create_pg_function_insert_events = SQL(
            "CREATE OR REPLACE FUNCTION {schema}.{function}(events {schema}.{event}[]) "
            "RETURNS SETOF bigint "
            "LANGUAGE plpgsql "
            "AS "
            "$BODY$"
            "BEGIN"
            "    SET LOCAL lock_timeout = '{lock_timeout}s';"
            "    LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE;"
            "    NOTIFY {channel};"
            "    RETURN QUERY"
            "    INSERT INTO {schema}.{table} AS t ("
            "    originator_id, originator_version, topic, state)"
            "    SELECT originator_id, originator_version, topic, state"
            "    FROM unnest(events)"
            "    RETURNING notification_id;"
            "END;"
            "$BODY$"
        ).format(
            schema=schema,
            function=function,
            lock_timeout=datastore.lock_timeout,
            channel=Identifier(self.channel_name),
            event=Identifier(self.stored_event_type_name),
            table=table,
        )
        self.sql_create_statements[self.create_insert_function_statement_index] = (
            self.sql_create_pg_function_insert_events
        )
