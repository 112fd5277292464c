"""Read the uploads view."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec

from modelyard.projections.base import Tx


class Upload(msgspec.Struct, frozen=True, kw_only=True):
    """One model upload as the view holds it."""

    id: UUID
    account_id: str
    filename: str
    status: str
    name: str | None
    deployment_id: str | None
    size_bytes: int
    sha256: str | None
    reason: str | None
    updated_at: str


_UPLOAD = (
    "SELECT id, account_id, filename, status, name, deployment_id, size_bytes, sha256, reason, updated_at"
    " FROM model_uploads"
)


def _upload(row: tuple[Any, ...]) -> Upload:
    up, account, filename, status, name, dep, size, sha, reason, updated = row
    return Upload(
        id=UUID(hex=str(up)), account_id=str(account), filename=str(filename), status=str(status), name=name,
        deployment_id=dep, size_bytes=int(size), sha256=sha, reason=reason, updated_at=str(updated),
    )  # fmt: skip


def ready_upload(tx: Tx, account_id: str, name: str) -> Upload | None:
    """The account's ready upload called ``name``, if any (the latest, should there be two)."""
    rows = tx.execute(
        f"{_UPLOAD} WHERE account_id = %s AND name = %s AND status = 'ready' ORDER BY updated_at DESC",
        [account_id, name],
    )
    return _upload(rows[0]) if rows else None


def upload_of(tx: Tx, account_id: str, upload_id: UUID) -> Upload | None:
    """One upload of the account."""
    rows = tx.execute(f"{_UPLOAD} WHERE account_id = %s AND id = %s", [account_id, upload_id.hex])
    return _upload(rows[0]) if rows else None
