"""The PostgreSQL recorder: one round trip per append, notification ids in commit order.

eventsourcing's recorder appends in a pipelined transaction (BEGIN, lock, NOTIFY,
INSERT, then COMMIT): two or three waits on the server per command. Its database-function
path is one statement in autocommit, one wait, but its function does not lock the table,
so two writers could commit out of the order of their notification ids and a reader
tailing the log (the relay, the projections) could pass an id that is committed later.
This recorder's function takes the same ``EXCLUSIVE`` table lock eventsourcing's pipelined
path takes, so each append gets its ids and commits before the next one gets any: the
log is read in commit order, one round trip per append. Enabled by ``store_env`` with
``POSTGRES_ENABLE_DB_FUNCTIONS``.
"""

from __future__ import annotations

from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg.sql import SQL, Identifier


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
