"""Typed settings, read from the environment once and passed explicitly.

Each variable is declared once, on the field it fills: ``variable(NAME, meaning)`` in the
field's annotation names the environment variable and says in one line what it is for;
the field's default is the variable's default. ``load_settings`` converts the environment
into ``Settings`` with msgspec, and ``ENVIRONMENT`` (name -> default, meaning) is derived
from the same declarations: ``compose.yaml`` may set only these (a test checks it). The
embedded default needs none of them: SQLite in ``.modelyard/`` under the working
directory, no Kafka, the CPU engine.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec


class StoreKind(StrEnum):
    """Where the event store lives."""

    SQLITE = "sqlite"
    POSTGRES = "postgres"


class SettingsError(ValueError):
    """An environment variable holds a value the product cannot use."""


def variable(name: str, meaning: str, *, secret: bool = False) -> msgspec.Meta:
    """Declare the environment variable that fills a field, with its one-line meaning.

    A ``secret`` never appears in a repr (so never in a log line or a traceback's locals).
    """
    return msgspec.Meta(extra={"env": name, "meaning": meaning, "secret": secret})


class EnvStruct(msgspec.Struct, frozen=True, kw_only=True):
    """A Struct filled from environment variables; its repr hides the secret fields."""

    def __repr__(self) -> str:
        shown = []
        for field in msgspec.structs.fields(self):
            declared = _declarations(type(self)).get(field.name)
            value = getattr(self, field.name)
            hidden = declared is not None and declared["secret"] and value
            shown.append(f"{field.name}={'***' if hidden else repr(value)}")
        return f"{type(self).__name__}({', '.join(shown)})"


class PostgresSettings(EnvStruct, frozen=True, kw_only=True):
    """How to reach the cluster's PostgreSQL."""

    host: Annotated[str, variable("POSTGRES_HOST", "PostgreSQL host (cluster mode)")] = "127.0.0.1"
    port: Annotated[int, variable("POSTGRES_PORT", "PostgreSQL port")] = 5432
    dbname: Annotated[str, variable("POSTGRES_DBNAME", "PostgreSQL database")] = "modelyard"
    user: Annotated[str, variable("POSTGRES_USER", "PostgreSQL user")] = "modelyard"
    password: Annotated[str, variable("POSTGRES_PASSWORD", "PostgreSQL password", secret=True)] = ""

    @property
    def conninfo(self) -> str:
        """A libpq connection string for psycopg."""
        parts = [f"host={self.host}", f"port={self.port}", f"dbname={self.dbname}"]
        parts.append(f"user={self.user}")
        if self.password:
            parts.append(f"password={self.password}")
        return " ".join(parts)


class LogSettings(EnvStruct, frozen=True, kw_only=True):
    """How a process logs; read alone by every command before anything else (cli/__init__.py)."""

    level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR"],
        variable("MODELYARD_LOG_LEVEL", "the lowest level logged: DEBUG, INFO, WARNING or ERROR"),
    ] = "INFO"


class ReplicaSettings(EnvStruct, frozen=True, kw_only=True):
    """How a CPU replica process (llama.cpp) reuses prompts and queues requests; read by the replica."""

    prompt_cache_mb: Annotated[
        int,
        variable(
            "MODELYARD_PROMPT_CACHE_MB",
            "MiB a llama.cpp replica keeps recent prompts' KV state in, reused across conversations (0: off)",
        ),
    ] = 256
    queue_depth: Annotated[
        int,
        variable(
            "MODELYARD_REPLICA_QUEUE_DEPTH", "requests a replica holds waiting behind the one it serves"
        ),
    ] = 16
    queue_timeout_s: Annotated[
        float,
        variable(
            "MODELYARD_REPLICA_QUEUE_TIMEOUT_S",
            "longest a request waits for a replica's engine before a 503 with Retry-After",
        ),
    ] = 60.0


class Settings(EnvStruct, frozen=True, kw_only=True):
    """Everything a modelyard process needs to know about its surroundings."""

    data_dir: Annotated[
        Path, variable("MODELYARD_DATA_DIR", "folder for the embedded store and model files")
    ] = Path(".modelyard")
    store: Annotated[
        StoreKind, variable("MODELYARD_STORE", "event store: sqlite (embedded) or postgres (cluster)")
    ] = StoreKind.SQLITE
    postgres: PostgresSettings = PostgresSettings()
    kafka_bootstrap: Annotated[
        str, variable("MODELYARD_KAFKA_BOOTSTRAP", "Kafka bootstrap servers; empty means no Kafka")
    ] = ""
    kafka_topic: Annotated[
        str, variable("MODELYARD_KAFKA_TOPIC", "topic every stored event is relayed to")
    ] = "modelyard.events"
    host: Annotated[str, variable("MODELYARD_HOST", "address the API listens on")] = "127.0.0.1"
    port: Annotated[int, variable("MODELYARD_PORT", "port the API listens on")] = 8080
    public_url: Annotated[
        str, variable("MODELYARD_PUBLIC_URL", "URL clients use to reach the API, if not host:port")
    ] = ""
    services_dir: Annotated[
        Path, variable("MODELYARD_SERVICES_DIR", "where `modelyard services` keeps PG and Kafka")
    ] = Path(".services")
    engine: Annotated[
        Literal["auto", "simulated"],
        variable("MODELYARD_ENGINE", "auto (llama.cpp on CPU, vLLM on GPU) or simulated (tests, load)"),
    ] = "auto"
    rate_limit_rpm: Annotated[
        int, variable("MODELYARD_RATE_LIMIT_RPM", "requests per minute per key, shared by every API process")
    ] = 1000
    quotas: Annotated[
        str,
        variable(
            "MODELYARD_QUOTAS",
            "per-plan live deployments/replicas per account, e.g. free=5/10,basic=10/32 (empty: defaults)",
        ),
    ] = ""
    plan_limits: Annotated[
        str,
        variable(
            "MODELYARD_PLAN_LIMITS",
            "per-plan requests/tokens per minute per key on /api/v1/public, e.g. free=10/50000",
        ),
    ] = ""
    gguf_models: Annotated[
        str, variable("MODELYARD_GGUF_MODELS", "more CPU models: id=/path/model.gguf,id2=/path/b.gguf")
    ] = ""
    gpu_types: Annotated[
        str,
        variable(
            "MODELYARD_GPU_TYPES",
            "catalog GPU types here, e.g. h100,mi300x; none: no GPU (empty: h100 if one is visible)",
        ),
    ] = ""
    regions: Annotated[
        str,
        variable("MODELYARD_REGIONS", "regions this cluster has capacity in, e.g. nyc2,tor1 (empty: all)"),
    ] = ""
    placement: Annotated[
        Literal["local", "ray"],
        variable(
            "MODELYARD_PLACEMENT", "where replicas run: local (processes on this host) or ray (a Ray cluster)"
        ),
    ] = "local"
    ray_address: Annotated[
        str, variable("MODELYARD_RAY_ADDRESS", "the Ray cluster's GCS address, host:port (placement ray)")
    ] = ""
    capacity_wait_s: Annotated[
        float,
        msgspec.Meta(gt=0),
        variable(
            "MODELYARD_CAPACITY_WAIT_S",
            "how long a deployment no node has room for waits (status says so) before it fails",
        ),
    ] = 600.0
    simulated_ttft_ms: Annotated[
        float, variable("MODELYARD_SIMULATED_TTFT_MS", "the simulated engine's time to first token")
    ] = 0.0
    simulated_tokens_per_s: Annotated[
        float, variable("MODELYARD_SIMULATED_TOKENS_PER_S", "the simulated engine's token rate (0: no delay)")
    ] = 0.0
    autoscale_interval_s: Annotated[
        float,
        msgspec.Meta(gt=0),
        variable("MODELYARD_AUTOSCALE_INTERVAL_S", "how often the autoscaler polls the replicas' metrics"),
    ] = 30.0
    autoscale_target_concurrency: Annotated[
        float,
        msgspec.Meta(gt=0),
        variable("MODELYARD_AUTOSCALE_TARGET_CONCURRENCY", "requests in flight per replica aimed at"),
    ] = 4.0
    autoscale_down_window_s: Annotated[
        float,
        msgspec.Meta(gt=0),
        variable("MODELYARD_AUTOSCALE_DOWN_WINDOW_S", "how long demand stays low before replicas go"),
    ] = 60.0
    sla_window_s: Annotated[
        float,
        msgspec.Meta(gt=0),
        variable("MODELYARD_SLA_WINDOW_S", "the SLA evaluator's window: TTFT and throughput judged each"),
    ] = 60.0
    cold_start_wait_s: Annotated[
        float,
        msgspec.Meta(ge=0),
        variable(
            "MODELYARD_COLD_START_WAIT_S",
            "how long a request to a deployment scaled to zero is held for its cold start (then 503)",
        ),
    ] = 120.0
    upstreams: Annotated[
        str,
        variable(
            "MODELYARD_UPSTREAMS",
            "routed chat upstreams for all accounts: JSON list of {name, base_url, api_key, models, prices}",
            secret=True,
        ),
    ] = ""
    upstream_timeout_s: Annotated[
        float,
        variable("MODELYARD_UPSTREAM_TIMEOUT_S", "seconds of upstream silence before routed chat falls back"),
    ] = 30.0
    webhook_allowed_networks: Annotated[
        str,
        variable(
            "MODELYARD_WEBHOOK_ALLOWED_NETWORKS",
            "internal networks webhooks may still be sent to, as CIDRs (e.g. 127.0.0.0/8); empty: none",
        ),
    ] = ""
    webhook_retry_schedule: Annotated[
        str,
        variable(
            "MODELYARD_WEBHOOK_RETRY_SCHEDULE",
            "seconds before each webhook retry (+-20% jitter); after the last, the dead letters",
        ),
    ] = "5,30,120,600,1800,3600"
    webhook_timeout_s: Annotated[
        float, variable("MODELYARD_WEBHOOK_TIMEOUT_S", "how long one webhook try waits for its answer")
    ] = 10.0
    webhook_concurrency: Annotated[
        int, variable("MODELYARD_WEBHOOK_CONCURRENCY", "webhook tries in flight at once, per dispatcher")
    ] = 128
    webhook_credits_low_usd: Annotated[
        str,
        variable("MODELYARD_WEBHOOK_CREDITS_LOW_USD", "balance below which account.credits_low is sent"),
    ] = "5.00"
    balance_guard_interval_s: Annotated[
        float,
        msgspec.Meta(gt=0),
        variable("MODELYARD_BALANCE_GUARD_INTERVAL_S", "how often low balances move deployments"),
    ] = 5.0
    webhook_secret_overlap_s: Annotated[
        float,
        variable("MODELYARD_WEBHOOK_SECRET_OVERLAP_S", "how long a rotated webhook secret still signs"),
    ] = 86400.0
    max_upload_bytes: Annotated[
        int, variable("MODELYARD_MAX_UPLOAD_BYTES", "largest GGUF model an upload (BYOM) may send, in bytes")
    ] = 32 << 30
    log: LogSettings = LogSettings()
    replica: ReplicaSettings = ReplicaSettings()

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


class AgentSettings(EnvStruct, frozen=True, kw_only=True):
    """What the agent-side commands (``provision``, ``chat`` …) need: where the API is, and the key."""

    url: Annotated[str, variable("MODELYARD_URL", "the API the agent commands talk to")] = (
        "http://127.0.0.1:8080"
    )
    api_key: Annotated[
        str, variable("MODELYARD_API_KEY", "the agent commands' auxen_live_ management key", secret=True)
    ] = ""


S = TypeVar("S", bound="EnvStruct")


def _declarations(cls: type[msgspec.Struct]) -> dict[str, dict[str, Any]]:
    """Field name -> its ``variable`` declaration, for the fields an environment variable fills."""
    found = {}
    for name, hint in typing.get_type_hints(cls, include_extras=True).items():
        for meta in getattr(hint, "__metadata__", ()):
            if isinstance(meta, msgspec.Meta) and meta.extra and "env" in meta.extra:
                found[name] = meta.extra
    return found


def _dec_hook(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(f"no conversion to {kind}")


def _convert(cls: type[S], env: Mapping[str, str]) -> S:
    """Fill ``cls`` from ``env``: each declared variable present is converted to its field's
    type (strings to numbers, enums, paths), absent ones keep the field's default."""
    hints = typing.get_type_hints(cls, include_extras=True)
    declared = _declarations(cls)
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        if isinstance(field.type, type) and issubclass(field.type, EnvStruct):
            values[field.name] = _convert(field.type, env)
            continue
        name = declared[field.name]["env"]
        if name not in env:
            continue
        try:
            values[field.name] = msgspec.convert(
                env[name], hints[field.name], strict=False, dec_hook=_dec_hook
            )
        except msgspec.ValidationError as exc:
            shown = "***" if declared[field.name]["secret"] else repr(env[name])
            raise SettingsError(f"{name}={shown} is not valid: {exc}") from None
    return cls(**values)


def _environment(cls: type[EnvStruct]) -> dict[str, tuple[str, str]]:
    table: dict[str, tuple[str, str]] = {}
    defaults = cls()
    for field in msgspec.structs.fields(cls):
        if isinstance(field.type, type) and issubclass(field.type, EnvStruct):
            table |= _environment(field.type)
        elif (declared := _declarations(cls).get(field.name)) is not None:
            table[declared["env"]] = (str(getattr(defaults, field.name)), declared["meaning"])
    return table


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``env`` (the process environment by default).

    Raises ``SettingsError`` naming the variable when a value cannot be used.
    """
    return _convert(Settings, os.environ if env is None else env)


def load_log_settings(env: Mapping[str, str] | None = None) -> LogSettings:
    """Only the logging settings, for processes that need nothing else (a replica, the CLI)."""
    return _convert(LogSettings, os.environ if env is None else env)


def load_replica_settings(env: Mapping[str, str] | None = None) -> ReplicaSettings:
    """Only a replica process's own settings."""
    return _convert(ReplicaSettings, os.environ if env is None else env)


def load_agent_settings(env: Mapping[str, str] | None = None) -> AgentSettings:
    """Build the agent commands' settings from ``env`` (the process environment by default)."""
    return _convert(AgentSettings, os.environ if env is None else env)


# name -> (default, one-line meaning): every variable the product's processes read, derived
# from the declarations above (compose.yaml may set only these; a test checks it).
ENVIRONMENT: dict[str, tuple[str, str]] = _environment(Settings)
# The agent commands' own variables, read on the agent's machine, never by a server.
AGENT_ENVIRONMENT: dict[str, tuple[str, str]] = _environment(AgentSettings)
