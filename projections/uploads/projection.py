"""Fold model upload events into one row per upload."""

from __future__ import annotations

from collections.abc import Sequence

from modelyard.domain.uploads.aggregate import (
    UploadCompleted,
    UploadFailed,
    UploadOpened,
    UploadStarted,
    UploadStatus,
)
from modelyard.projections.base import OneByOne, Tx
from modelyard.projections.common import account_ref

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS model_uploads (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        filename TEXT NOT NULL,
        status TEXT NOT NULL,
        name TEXT,
        deployment_id TEXT,
        size_bytes BIGINT NOT NULL,
        sha256 TEXT,
        reason TEXT,
        updated_at TEXT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS model_uploads_name ON model_uploads (account_id, name)",
)


class UploadsProjection(OneByOne):
    """One row per model upload, its status as it moves."""

    name = "uploads"
    schema: Sequence[str] = SCHEMA
    tables: Sequence[str] = ("model_uploads",)

    def apply(self, tx: Tx, event: object, position: int) -> None:
        """Insert on open, update on each later step; other events are not this view's."""
        if isinstance(event, UploadOpened):
            tx.execute(
                "INSERT INTO model_uploads (id, account_id, filename, status, size_bytes, updated_at)"
                " VALUES (%s, %s, %s, %s, 0, %s) ON CONFLICT (id) DO NOTHING",
                [event.originator_id.hex, account_ref(event.account_id), event.filename,
                 UploadStatus.PENDING.value, event.timestamp.isoformat()],
            )  # fmt: skip
        elif isinstance(event, UploadStarted):
            _status(tx, event.originator_id.hex, UploadStatus.UPLOADING, event.timestamp.isoformat())
        elif isinstance(event, UploadCompleted):
            tx.execute(
                "UPDATE model_uploads SET status = %s, name = %s, deployment_id = %s, size_bytes = %s,"
                " sha256 = %s, updated_at = %s WHERE id = %s",
                [UploadStatus.READY.value, event.name,
                 event.deployment_id.hex if event.deployment_id else None, event.size_bytes, event.sha256,
                 event.timestamp.isoformat(), event.originator_id.hex],
            )  # fmt: skip
        elif isinstance(event, UploadFailed):
            tx.execute(
                "UPDATE model_uploads SET status = %s, reason = %s, updated_at = %s WHERE id = %s",
                [
                    UploadStatus.FAILED.value,
                    event.reason,
                    event.timestamp.isoformat(),
                    event.originator_id.hex,
                ],
            )


def _status(tx: Tx, upload_id: str, status: UploadStatus, at: str) -> None:
    tx.execute(
        "UPDATE model_uploads SET status = %s, updated_at = %s WHERE id = %s", [status.value, at, upload_id]
    )
