"""Fold usage records into per-(deployment, model, minute) rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from modelyard.projections.base import OneByOne, Tx
from modelyard.projections.metrics import histogram
from modelyard.projections.metrics.records import UsageRecorded

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


class MetricsProjection(OneByOne):
    """Requests, tokens, errors and latency/TTFT histograms per deployment, model and minute."""

    name = "metrics"
    schema: Sequence[str] = SCHEMA
    tables: Sequence[str] = ("metrics_minute",)

    def apply(self, tx: Tx, event: object, position: int) -> None:
        """Add one usage record to its minute's row; other events are not this view's."""
        if not isinstance(event, UsageRecorded):
            return
        key = [event.deployment_id, event.model, minute_key(event.timestamp)]
        rows = tx.execute(
            "SELECT requests, errors, prompt_tokens, completion_tokens, latency_hist, ttft_hist"
            " FROM metrics_minute WHERE deployment_id = %s AND model = %s AND minute = %s",
            key,
        )
        requests, errors, prompt, completion, latency, ttft = rows[0] if rows else (0, 0, 0, 0, "", "")
        latency_hist = histogram.add(histogram.loads(latency), event.latency_ms)
        ttft_hist = histogram.loads(ttft)
        if event.ttft_ms is not None:
            ttft_hist = histogram.add(ttft_hist, event.ttft_ms)
        values = [
            requests + 1,
            errors + int(event.is_error),
            prompt + event.prompt_tokens,
            completion + event.completion_tokens,
            histogram.dumps(latency_hist),
            histogram.dumps(ttft_hist),
        ]
        if rows:
            tx.execute(
                "UPDATE metrics_minute SET requests = %s, errors = %s, prompt_tokens = %s,"
                " completion_tokens = %s, latency_hist = %s, ttft_hist = %s"
                " WHERE deployment_id = %s AND model = %s AND minute = %s",
                [*values, *key],
            )
        else:
            tx.execute(
                "INSERT INTO metrics_minute (deployment_id, model, minute, account_id, requests, errors,"
                " prompt_tokens, completion_tokens, latency_hist, ttft_hist)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [*key, event.account_id, *values],
            )
