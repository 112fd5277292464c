"""Fold usage records into per-(deployment, model, minute) rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from modelyard.domain.shared import ids
from modelyard.domain.usage.events import UsageRecorded
from modelyard.projections.base import Positioned, Tx
from modelyard.projections.metrics import histogram

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS metrics_minute (
        deployment_id TEXT NOT NULL,
        model TEXT NOT NULL,
        minute TEXT NOT NULL,
        account_id TEXT NOT NULL,
        requests BIGINT NOT NULL,
        errors BIGINT NOT NULL,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        latency_hist TEXT NOT NULL,
        ttft_hist TEXT NOT NULL,
        PRIMARY KEY (deployment_id, model, minute)
    )
    """,
    "CREATE INDEX IF NOT EXISTS metrics_minute_account ON metrics_minute (account_id, minute)",
)


def minute_key(at: datetime) -> str:
    """The UTC minute a moment falls in, as the view stores it (sortable text)."""
    return at.astimezone(UTC).replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M")


class _Minute(msgspec.Struct, kw_only=True):
    """One ``metrics_minute`` row while a batch is folded."""

    account_id: str
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: dict[int, int] = msgspec.field(default_factory=dict)
    ttft: dict[int, int] = msgspec.field(default_factory=dict)

    def add(self, event: UsageRecorded) -> None:
        """Count one request in the row."""
        self.requests += 1
        self.errors += int(event.is_error)
        self.prompt_tokens += event.prompt_tokens
        self.completion_tokens += event.completion_tokens
        # In place: the row is this batch's own copy, and a batch may add hundreds of values.
        histogram.observe(self.latency, event.latency_ms)
        if event.ttft_ms is not None:
            histogram.observe(self.ttft, event.ttft_ms)


Key = tuple[str, str, str]


class MetricsProjection:
    """Requests, tokens, errors and latency/TTFT histograms per deployment, model and minute.

    Under load a batch holds hundreds of records for a handful of minutes: each minute's
    row is read once, every record of the batch added to it in memory, and written once.
    Rows name the deployment by ``uuid.hex`` whatever spelling the record carries (records
    written before that hold the printed ``inst_…`` id).
    """

    name = "metrics"
    schema: Sequence[str] = SCHEMA
    tables: Sequence[str] = ("metrics_minute",)

    def apply(self, tx: Tx, event: object, position: int) -> None:
        """Add one usage record to its minute's row; other events are not this view's."""
        self.apply_batch(tx, [(event, position)])

    def apply_batch(self, tx: Tx, events: Sequence[Positioned]) -> None:
        """See :class:`~modelyard.projections.base.Projection`."""
        rows: dict[Key, _Minute] = {}
        stored: dict[str, str] = {}
        for event, _ in events:
            if not isinstance(event, UsageRecorded):
                continue
            dep = stored.get(event.deployment_id)
            if dep is None:
                dep = stored[event.deployment_id] = ids.deployment_uuid(event.deployment_id).hex
            key = (dep, event.model, minute_key(event.timestamp))
            row = rows.get(key)
            if row is None:
                row = rows[key] = _read(tx, key) or _Minute(account_id=event.account_id)
            row.add(event)
        if rows:
            tx.executemany(UPSERT, [[*key, *_values(row)] for key, row in rows.items()])


UPSERT = (
    "INSERT INTO metrics_minute (deployment_id, model, minute, account_id, requests, errors,"
    " prompt_tokens, completion_tokens, latency_hist, ttft_hist)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (deployment_id, model, minute) DO UPDATE SET requests = EXCLUDED.requests,"
    " errors = EXCLUDED.errors, prompt_tokens = EXCLUDED.prompt_tokens,"
    " completion_tokens = EXCLUDED.completion_tokens, latency_hist = EXCLUDED.latency_hist,"
    " ttft_hist = EXCLUDED.ttft_hist"
)


def _read(tx: Tx, key: Key) -> _Minute | None:
    found = tx.execute(
        "SELECT account_id, requests, errors, prompt_tokens, completion_tokens, latency_hist, ttft_hist"
        " FROM metrics_minute WHERE deployment_id = %s AND model = %s AND minute = %s",
        list(key),
    )
    if not found:
        return None
    account_id, requests, errors, prompt, completion, latency, ttft = found[0]
    return _Minute(
        account_id=account_id,
        requests=requests,
        errors=errors,
        prompt_tokens=prompt,
        completion_tokens=completion,
        latency=histogram.loads(latency),
        ttft=histogram.loads(ttft),
    )


def _values(row: _Minute) -> list[object]:
    return [
        row.account_id,
        row.requests,
        row.errors,
        row.prompt_tokens,
        row.completion_tokens,
        histogram.dumps(row.latency),
        histogram.dumps(row.ttft),
    ]
