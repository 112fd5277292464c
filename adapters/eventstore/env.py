"""The ``eventsourcing`` environment for the configured store."""

from __future__ import annotations

import psycopg
from eventsourcing.utils import get_topic

from modelyard.adapters.eventstore.recorder import OrderedPostgresRecorder, SignallingSQLiteRecorder
from modelyard.domain.shared.store import Store
from modelyard.settings import Settings, StoreKind

# Appends in one round trip, ids in commit order (see ``recorder``).
_ORDERED_APPENDS = {
    "APPLICATION_RECORDER_TOPIC": get_topic(OrderedPostgresRecorder),
    "POSTGRES_ENABLE_DB_FUNCTIONS": "y",
}


def store_env(settings: Settings) -> dict[str, str]:
    """The variables an eventsourcing application reads to open the configured store."""
    if settings.store is StoreKind.SQLITE:
        settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(settings.sqlite_path),
            "CREATE_TABLE": "y",
            # Wakes this process's log readers when it appends (see ``recorder``).
            "APPLICATION_RECORDER_TOPIC": get_topic(SignallingSQLiteRecorder),
        }
    pg = settings.postgres
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": pg.dbname,
        "POSTGRES_HOST": pg.host,
        "POSTGRES_PORT": str(pg.port),
        "POSTGRES_USER": pg.user,
        "POSTGRES_PASSWORD": pg.password,
        "CREATE_TABLE": "y",
        **_ORDERED_APPENDS,
    }


def postgres_env_from_conninfo(conninfo: str) -> dict[str, str]:
    """The same variables for a libpq ``key=value`` connection string (tests, tools)."""
    parts = dict(item.split("=", 1) for item in conninfo.split())
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parts["dbname"],
        "POSTGRES_HOST": parts.get("host", "127.0.0.1"),
        "POSTGRES_PORT": parts.get("port", "5432"),
        "POSTGRES_USER": parts.get("user", ""),
        "POSTGRES_PASSWORD": parts.get("password", ""),
        "CREATE_TABLE": "y",
        **_ORDERED_APPENDS,
    }


def open_store(settings: Settings) -> Store:
    """The event store of the configured mode.

    eventsourcing creates its tables on start; two processes doing so at once on
    PostgreSQL collide in the catalog, so they take turns under an advisory lock.
    """
    if settings.store is StoreKind.SQLITE:
        return Store(env=store_env(settings))
    with psycopg.connect(settings.postgres.conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext('modelyard-store-schema'))")
        try:
            return Store(env=store_env(settings))
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('modelyard-store-schema'))")
