"""Fold the audio part of usage records into per-(deployment, model, minute) rows.

Text usage (tokens, embeddings' and rerank's included) lives in the metrics view; what an
audio model used is measured in time, so it has a view of its own, folded from the same
``UsageRecorded`` events (those with ``audio_ms``).
"""

from __future__ import annotations

from collections.abc import Sequence

from modelyard.domain.shared import ids
from modelyard.domain.usage.events import UsageRecorded
from modelyard.projections.base import Positioned, Tx
from modelyard.projections.metrics.projection import minute_key

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS audio_minute (
        deployment_id TEXT NOT NULL,
        model TEXT NOT NULL,
        minute TEXT NOT NULL,
        account_id TEXT NOT NULL,
        requests BIGINT NOT NULL,
        audio_ms BIGINT NOT NULL,
        PRIMARY KEY (deployment_id, model, minute)
    )
    """,
    "CREATE INDEX IF NOT EXISTS audio_minute_account ON audio_minute (account_id, minute)",
)

UPSERT = (
    "INSERT INTO audio_minute (deployment_id, model, minute, account_id, requests, audio_ms)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (deployment_id, model, minute) DO UPDATE SET"
    " requests = audio_minute.requests + EXCLUDED.requests,"
    " audio_ms = audio_minute.audio_ms + EXCLUDED.audio_ms"
)


class AudioProjection:
    """Requests and milliseconds of audio per deployment, model and minute."""

    name = "audio"
    schema: Sequence[str] = SCHEMA
    tables: Sequence[str] = ("audio_minute",)

    def apply(self, tx: Tx, event: object, position: int) -> None:
        """Add one usage record's audio to its minute's row; other events are not this view's."""
        self.apply_batch(tx, [(event, position)])

    def apply_batch(self, tx: Tx, events: Sequence[Positioned]) -> None:
        """See :class:`~modelyard.projections.base.Projection`: a batch is summed in memory,
        each minute written once (adding to what the row held)."""
        rows: dict[tuple[str, str, str], tuple[str, int, int]] = {}
        for event, _ in events:
            if not isinstance(event, UsageRecorded) or event.audio_ms <= 0:
                continue
            dep = ids.deployment_uuid(event.deployment_id).hex
            key = (dep, event.model, minute_key(event.timestamp))
            _, requests, audio_ms = rows.get(key, (event.account_id, 0, 0))
            rows[key] = (event.account_id, requests + 1, audio_ms + event.audio_ms)
        if rows:
            tx.executemany(UPSERT, [[*key, *row] for key, row in rows.items()])
