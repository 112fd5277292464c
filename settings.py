"""Typed settings, read from the environment once and passed explicitly.

Every variable the product reads is declared here, in ``ENVIRONMENT``, with its default.
``compose.yaml`` may set only these (a test checks it). The embedded default needs none of
them: SQLite in ``.modelyard/`` under the working directory, no Kafka, the CPU engine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

import msgspec


class StoreKind(StrEnum):
    """Where the event store lives."""

    SQLITE = "sqlite"
    POSTGRES = "postgres"


class PostgresSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How to reach the cluster's PostgreSQL."""

    host: str = "127.0.0.1"
    port: int = 5432
    dbname: str = "modelyard"
    user: str = "modelyard"
    password: str = ""

    @property
    def conninfo(self) -> str:
        """A libpq connection string for psycopg."""
        parts = [f"host={self.host}", f"port={self.port}", f"dbname={self.dbname}"]
        parts.append(f"user={self.user}")
        if self.password:
            parts.append(f"password={self.password}")
        return " ".join(parts)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a modelyard process needs to know about its surroundings."""

    data_dir: Path = Path(".modelyard")
    store: StoreKind = StoreKind.SQLITE
    postgres: PostgresSettings = PostgresSettings()
    kafka_bootstrap: str = ""
    kafka_topic: str = "modelyard.events"
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    services_dir: Path = Path(".services")
    engine: str = "auto"
    rate_limit_rpm: int = 1000
    gguf_models: str = ""
    simulated_ttft_ms: float = 0.0
    simulated_tokens_per_s: float = 0.0

    @property
    def sqlite_path(self) -> Path:
        """The embedded event store's file."""
        return self.data_dir / "events.sqlite3"

    @property
    def uses_kafka(self) -> bool:
        """Cluster mode reads events through Kafka; the embedded default does not."""
        return bool(self.kafka_bootstrap)

    @property
    def base_url(self) -> str:
        """The URL clients reach this API on (endpoints are built from it)."""
        return self.public_url or f"http://{self.host}:{self.port}"


# name -> (default, one-line meaning); the single list of variables the product reads.
ENVIRONMENT: dict[str, tuple[str, str]] = {
    "MODELYARD_DATA_DIR": (".modelyard", "folder for the embedded store and model files"),
    "MODELYARD_STORE": ("sqlite", "event store: sqlite (embedded) or postgres (cluster)"),
    "MODELYARD_KAFKA_BOOTSTRAP": ("", "Kafka bootstrap servers; empty means no Kafka"),
    "MODELYARD_KAFKA_TOPIC": ("modelyard.events", "topic every stored event is relayed to"),
    "MODELYARD_HOST": ("127.0.0.1", "address the API listens on"),
    "MODELYARD_PORT": ("8080", "port the API listens on"),
    "MODELYARD_PUBLIC_URL": ("", "URL clients use to reach the API, if not host:port"),
    "MODELYARD_SERVICES_DIR": (".services", "where `modelyard services` keeps PG and Kafka"),
    "MODELYARD_RATE_LIMIT_RPM": ("1000", "requests per minute per key, shared by every API process"),
    "MODELYARD_ENGINE": ("auto", "auto (llama.cpp on CPU, vLLM on GPU) or simulated (tests, load)"),
    "MODELYARD_GGUF_MODELS": ("", "more CPU models: id=/path/model.gguf,id2=/path/b.gguf"),
    "MODELYARD_SIMULATED_TTFT_MS": ("0", "the simulated engine's time to first token"),
    "MODELYARD_SIMULATED_TOKENS_PER_S": ("0", "the simulated engine's token rate (0: no delay)"),
    "POSTGRES_HOST": ("127.0.0.1", "PostgreSQL host (cluster mode)"),
    "POSTGRES_PORT": ("5432", "PostgreSQL port"),
    "POSTGRES_DBNAME": ("modelyard", "PostgreSQL database"),
    "POSTGRES_USER": ("modelyard", "PostgreSQL user"),
    "POSTGRES_PASSWORD": ("", "PostgreSQL password"),
}


class SettingsError(ValueError):
    """An environment variable holds a value the product cannot use."""


def _get(env: Mapping[str, str], name: str) -> str:
    return env.get(name, ENVIRONMENT[name][0])


def _int(env: Mapping[str, str], name: str) -> int:
    raw = _get(env, name)
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str) -> float:
    raw = _get(env, name)
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = _get(env, name)
    if raw not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``env`` (the process environment by default)."""
    env = os.environ if env is None else env
    store_raw = _get(env, "MODELYARD_STORE")
    try:
        store = StoreKind(store_raw)
    except ValueError:
        raise SettingsError(f"MODELYARD_STORE must be sqlite or postgres, got {store_raw!r}") from None
    return Settings(
        data_dir=Path(_get(env, "MODELYARD_DATA_DIR")),
        store=store,
        postgres=PostgresSettings(
            host=_get(env, "POSTGRES_HOST"),
            port=_int(env, "POSTGRES_PORT"),
            dbname=_get(env, "POSTGRES_DBNAME"),
            user=_get(env, "POSTGRES_USER"),
            password=_get(env, "POSTGRES_PASSWORD"),
        ),
        kafka_bootstrap=_get(env, "MODELYARD_KAFKA_BOOTSTRAP"),
        kafka_topic=_get(env, "MODELYARD_KAFKA_TOPIC"),
        host=_get(env, "MODELYARD_HOST"),
        port=_int(env, "MODELYARD_PORT"),
        public_url=_get(env, "MODELYARD_PUBLIC_URL"),
        services_dir=Path(_get(env, "MODELYARD_SERVICES_DIR")),
        rate_limit_rpm=_int(env, "MODELYARD_RATE_LIMIT_RPM"),
        engine=_choice(env, "MODELYARD_ENGINE", ("auto", "simulated")),
        gguf_models=_get(env, "MODELYARD_GGUF_MODELS"),
        simulated_ttft_ms=_float(env, "MODELYARD_SIMULATED_TTFT_MS"),
        simulated_tokens_per_s=_float(env, "MODELYARD_SIMULATED_TOKENS_PER_S"),
    )
