"""Read the metrics view: usage per model (E1) and per deployment (E2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import msgspec

from modelyard.projections.base import Tx
from modelyard.projections.metrics import histogram


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Totals and latency percentiles over a set of minute rows."""

    requests: int
    errors: int
    error_rate: float
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    latency_ms_p99: float | None
    ttft_ms_p50: float | None
    ttft_ms_p95: float | None
    ttft_ms_p99: float | None


def summarise(rows: Sequence[Sequence[Any]]) -> Usage:
    """Add up rows of (requests, errors, prompt, completion, latency_hist, ttft_hist)."""
    requests = sum(int(r[0]) for r in rows)
    errors = sum(int(r[1]) for r in rows)
    prompt = sum(int(r[2]) for r in rows)
    completion = sum(int(r[3]) for r in rows)
    latency = histogram.merge(*(histogram.loads(r[4]) for r in rows))
    ttft = histogram.merge(*(histogram.loads(r[5]) for r in rows))
    return Usage(
        requests=requests,
        errors=errors,
        error_rate=errors / requests if requests else 0.0,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        latency_ms_p50=histogram.percentile(latency, 50),
        latency_ms_p95=histogram.percentile(latency, 95),
        latency_ms_p99=histogram.percentile(latency, 99),
        ttft_ms_p50=histogram.percentile(ttft, 50),
        ttft_ms_p95=histogram.percentile(ttft, 95),
        ttft_ms_p99=histogram.percentile(ttft, 99),
    )


def usage_by_model(tx: Tx, account_id: str, since_minute: str) -> dict[str, Usage]:
    """An account's usage per model from ``since_minute`` (inclusive) on."""
    rows = tx.execute(
        "SELECT model, requests, errors, prompt_tokens, completion_tokens, latency_hist, ttft_hist"
        " FROM metrics_minute WHERE account_id = %s AND minute >= %s",
        [account_id, since_minute],
    )
    by_model: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_model.setdefault(str(row[0]), []).append(row[1:])
    return {model: summarise(model_rows) for model, model_rows in sorted(by_model.items())}


def usage_of_deployment(tx: Tx, deployment_id: UUID, since_minute: str) -> Usage:
    """One deployment's usage from ``since_minute`` (inclusive) on."""
    rows = tx.execute(
        "SELECT requests, errors, prompt_tokens, completion_tokens, latency_hist, ttft_hist"
        " FROM metrics_minute WHERE deployment_id = %s AND minute >= %s",
        [deployment_id.hex, since_minute],
    )
    return summarise(rows)


def usage_between(tx: Tx, deployment_id: UUID, since_minute: str, until_minute: str) -> Usage:
    """One deployment's usage in the minutes ``[since_minute, until_minute)``."""
    rows = tx.execute(
        "SELECT requests, errors, prompt_tokens, completion_tokens, latency_hist, ttft_hist"
        " FROM metrics_minute WHERE deployment_id = %s AND minute >= %s AND minute < %s",
        [deployment_id.hex, since_minute, until_minute],
    )
    return summarise(rows)


def requests_of_deployment(tx: Tx, deployment_id: UUID) -> tuple[int, int, int]:
    """(requests, completion tokens, errors) a deployment served, over all time."""
    rows = tx.execute(
        "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(errors), 0)"
        " FROM metrics_minute WHERE deployment_id = %s",
        [deployment_id.hex],
    )
    requests, completion, errors = rows[0]
    return int(requests), int(completion), int(errors)


def stored_ids(tx: Tx) -> set[str]:
    """Every deployment id the metrics view holds, as stored (for consistency checks)."""
    return {str(row[0]) for row in tx.execute("SELECT DISTINCT deployment_id FROM metrics_minute")}
