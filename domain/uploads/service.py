"""The uploads service: open, start, complete or fail a model upload."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from modelyard.domain.shared.errors import InvalidRequest
from modelyard.domain.shared.store import Store
from modelyard.domain.uploads import aggregate as uploads


class UploadsService:
    """Load, command, save: every write to model uploads goes through here."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, upload_id: UUID) -> uploads.ModelUpload:
        """The upload, or INVALID_REQUEST when there is none by that id."""
        return self._store.load(upload_id, uploads.project_upload, uploads.ModelUpload, InvalidRequest)

    def open(self, upload_id: UUID, account_id: UUID, filename: str, at: datetime) -> int:
        """Record a new upload (``pending_upload``); returns its position."""
        return self._store.record(uploads.open_upload(upload_id, account_id, filename, at))

    def start(self, upload_id: UUID, at: datetime) -> int:
        """Record that its bytes are being written (``uploading``)."""
        return self._store.record(uploads.start_upload(self.get(upload_id), at))

    def complete(
        self,
        upload_id: UUID,
        *,
        name: str,
        deployment_id: UUID | None,
        size_bytes: int,
        sha256: str,
        at: datetime,
    ) -> int:
        """Record the stored, checked file under ``name`` (``ready``)."""
        event = uploads.complete_upload(
            self.get(upload_id),
            name=name,
            deployment_id=deployment_id,
            size_bytes=size_bytes,
            sha256=sha256,
            at=at,
        )
        return self._store.record(event)

    def fail(self, upload_id: UUID, reason: str, at: datetime) -> int:
        """Record that the upload ended without a model (``failed``)."""
        return self._store.record(uploads.fail_upload(self.get(upload_id), reason, at))
