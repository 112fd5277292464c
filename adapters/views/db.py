"""View databases: a transaction that projections write through, on SQLite or PostgreSQL.

Projections write portable SQL with ``%s`` placeholders; SQLite's adapter turns them into
``?``. Each database also holds ``projection_tracking``: per projection and source
partition, the last notification id applied, written in the same transaction as the rows.
The same machinery, opened with another ``schema``, holds the state store
(``modelyard.adapters.state``): what a rebuild of the views must never touch.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from psycopg_pool import ConnectionPool

from modelyard.projections.base import Tx
from modelyard.settings import Settings, StoreKind

#: The advisory lock every process takes around ``CREATE … IF NOT EXISTS`` on PostgreSQL:
#: two processes creating one table at once collide in the catalog.
SCHEMA_LOCK = "modelyard-schema"

TRACKING = """
CREATE TABLE IF NOT EXISTS projection_tracking (
    projection TEXT NOT NULL,
    partition INTEGER NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (projection, partition)
)
"""


class ViewDatabase(Protocol):
    """A database projections write to and queries read from."""

    def transaction(self, lock: str | None = None) -> AbstractContextManager[Tx]:
        """One transaction: committed when the block ends, rolled back if it raises.

        With ``lock``, no other transaction holding the same lock name runs at the same
        time, in this process or any other (projection runners use it).
        """
        ...

    def ensure(self, statements: Sequence[str]) -> None:
        """Run idempotent DDL (``CREATE … IF NOT EXISTS``), safely against other processes."""
        ...

    def read(self) -> AbstractContextManager[Tx]:
        """A read-only snapshot that never waits for a writer (the API's hot path)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) if needed, and make it the owner's alone (0700).

    The data directory holds the stores, the state (unshown keys among it) and replica
    logs: nobody else on the machine reads any of it.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` if needed as the owner's alone (0600); an existing one is made so.

    SQLite creates a database's ``-wal``, ``-shm`` and ``-journal`` files with the
    database's own mode, so making the database private makes them private too.
    """
    private_dir(path.parent)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    path.chmod(0o600)
    return path


def _insert(table: str, columns: Sequence[str]) -> str:
    placeholders = ", ".join("%s" for _ in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"  # noqa: S608 - names are code


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self._conn.execute(sql.replace("%s", "?"), tuple(params))
        return cursor.fetchall() if cursor.description else []

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql.replace("%s", "?"), params)

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.executemany(_insert(table, columns), rows)


class SqliteViews:
    """Views in one SQLite file; one writer at a time, as SQLite wants.

    The file is private (0600). With ``forgetful`` (the state store, which holds secrets
    until they are forgotten) a deleted row leaves no trace in the files: ``secure_delete``
    overwrites it with zeros, and the rollback journal (``TRUNCATE``, not WAL, which
    would keep the row's old page until a checkpoint) is emptied as each transaction
    commits. Readers then wait out a commit (a few milliseconds), which the state's light
    traffic affords; the views keep WAL, whose readers never wait.
    """

    def __init__(self, path: Path, *, schema: Sequence[str] = (TRACKING,), forgetful: bool = False) -> None:
        private_file(path)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        if forgetful:
            self._conn.execute("PRAGMA secure_delete=ON")
            self._conn.execute("PRAGMA journal_mode=TRUNCATE")
        else:
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._path = path
        self._lock = threading.RLock()
        self._readers = threading.local()
        self.ensure(schema)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """See :class:`ViewDatabase`: each thread reads on its own connection (beside the writer, in WAL)."""
        conn: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, timeout=30)
            conn.execute("PRAGMA query_only=ON")
            self._readers.conn = conn
        conn.execute("BEGIN")
        try:
            yield _SqliteTx(conn)
        finally:
            conn.execute("COMMIT")

    @contextmanager
    def transaction(self, lock: str | None = None) -> Iterator[Tx]:
        """See :class:`ViewDatabase`; SQLite's immediate transactions already exclude writers."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteTx(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def ensure(self, statements: Sequence[str]) -> None:
        """See :class:`ViewDatabase`."""
        with self.transaction() as tx:
            for statement in statements:
                tx.execute(statement)

    def close(self) -> None:
        """See :class:`ViewDatabase`."""
        self._conn.close()


class _PostgresTx:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self._conn.execute(sql, tuple(params))
        return list(cursor.fetchall()) if cursor.description else []

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        # psycopg sends the rows pipelined: one round trip for the lot, not one per row.
        with self._conn.cursor() as cursor:
            cursor.executemany(sql, params)

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        # COPY streams the rows in one go, several times faster than even pipelined INSERTs.
        statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with self._conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)


class PostgresViews:
    """Views in PostgreSQL, shared by every API and worker process."""

    def __init__(self, conninfo: str, *, max_size: int = 8, schema: Sequence[str] = (TRACKING,)) -> None:
        self.pool = ConnectionPool(conninfo, min_size=1, max_size=max_size, open=True)
        self.ensure(schema)

    @contextmanager
    def transaction(self, lock: str | None = None) -> Iterator[Tx]:
        """See :class:`ViewDatabase`."""
        with self.pool.connection() as conn, conn.transaction():
            if lock is not None:
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [lock])
            yield _PostgresTx(conn)

    def read(self) -> AbstractContextManager[Tx]:
        """See :class:`ViewDatabase`: a pooled connection, no lock taken."""
        return self.transaction()

    def ensure(self, statements: Sequence[str]) -> None:
        """See :class:`ViewDatabase`."""
        # Two processes creating the same table at once collide in the catalog; take turns.
        with self.transaction(lock=SCHEMA_LOCK) as tx:
            for statement in statements:
                tx.execute(statement)

    def close(self) -> None:
        """See :class:`ViewDatabase`."""
        self.pool.close()


def open_views(settings: Settings) -> SqliteViews | PostgresViews:
    """The live views of the configured deployment mode."""
    if settings.store is StoreKind.SQLITE:
        return SqliteViews(settings.data_dir / "views.sqlite3")
    return PostgresViews(settings.postgres.conninfo)
