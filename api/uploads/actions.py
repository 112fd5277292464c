"""Receiving a model upload: every step an event, nothing kept of an upload that fails.

The body is read as it arrives (``adapters.uploads.receiver``). Nothing is recorded or
written until the file's first bytes are GGUF's; then the upload is opened
(``pending_upload``) and its bytes are written (``uploading``), hashed and counted against
the size limit. When the body is whole, the fields are checked (the name free on the
account, the deployment the account's), the file checked whole, moved into place and the
upload recorded ``ready``. Any failure on the way (a refusal, a client gone, a crash of the
request) deletes what was written and records ``failed``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import anyio
import msgspec

from modelyard.adapters.uploads.receiver import Fed, Receiver, Refused, keep, upload_path
from modelyard.adapters.views.db import ViewDatabase
from modelyard.adapters.views.follow import ViewsFollower
from modelyard.api.auth import Principal
from modelyard.domain.services import Services
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import (
    ConcurrencyConflict,
    InstanceNotFound,
    InvalidModel,
    InvalidRequest,
    ModelyardError,
)
from modelyard.domain.uploads.aggregate import PREFIX, check_name
from modelyard.projections.deployments.queries import instance_for_account
from modelyard.projections.uploads.queries import ready_upload, upload_of

log = logging.getLogger(__name__)


class UploadView(msgspec.Struct, frozen=True, kw_only=True):
    """An upload as the API shows it (``name``, ``model`` and ``sha256`` once it is ready)."""

    id: str
    name: str | None
    model: str | None
    status: str
    deployment_id: str | None
    size_bytes: int
    sha256: str | None
    reason: str | None = None


class UploadData(msgspec.Struct, frozen=True, kw_only=True):
    """``data`` of an upload answer."""

    upload: UploadView


class UploadAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """``{"success": true, "data": {"upload": {…}}}``."""

    success: bool = True
    data: UploadData


class UploadNotFound(ModelyardError):
    """No upload by that id on the caller's account."""

    code = "NOT_FOUND"


def _now() -> datetime:
    return datetime.now(UTC)


class Uploads:
    """Receive model uploads for an account."""

    def __init__(
        self, services: Services, views: ViewDatabase, follower: ViewsFollower, data_dir: Path, max_bytes: int
    ) -> None:
        self._services, self._views, self._follower = services, views, follower
        self._folder, self._data_dir, self._max = data_dir / "models", data_dir, max_bytes

    def _fields(self, principal: Principal, fields: dict[str, str]) -> tuple[str, UUID | None]:
        """The checked name (free on the account) and the deployment (the account's), if named."""
        name = check_name(fields.get("name", "").strip())
        deployment: UUID | None = None
        named = fields.get("deployment_id", "").strip()
        with self._views.read() as tx:
            if named:
                deployment = ids.parse_deployment_id(named)
                found = instance_for_account(tx, principal.account_id, deployment)
                if found is None or found.state == "destroyed":
                    raise InstanceNotFound(f"No deployment {named} on this account.")
            if ready_upload(tx, principal.account_id, name) is not None:
                raise InvalidRequest(
                    f"This account already has a model called {PREFIX}{name}; pick another name."
                )
        return name, deployment

    async def receive(
        self, principal: Principal, content_type: str, body: AsyncIterator[bytes]
    ) -> UploadAnswer:
        """Read, check, store and record one upload."""
        receiver = _receiver(content_type, self._folder, self._max)
        account = ids.parse_id(principal.account_id, ids.ACCOUNT)
        upload_id: UUID | None = None
        try:
            async for chunk in body:
                fed = _fed(receiver, chunk)
                if fed.gguf_seen:
                    upload_id = uuid.uuid4()
                    await anyio.to_thread.run_sync(self._opened, upload_id, account, receiver.filename)
            path = _finished(receiver)
            name, deployment = await anyio.to_thread.run_sync(self._fields, principal, receiver.fields)
            if upload_id is None:  # pragma: no cover - a finished file was opened
                raise InvalidRequest("The upload has no file.")
            final = upload_path(self._data_dir, upload_id.hex)
            keep(path, final)
            stored = UploadView(
                id=upload_id.hex, name=name, model=PREFIX + name, status="ready",
                deployment_id=ids.instance_ref(deployment) if deployment else None,
                size_bytes=receiver.size, sha256=receiver.sha256,
            )  # fmt: skip
            answer = await anyio.to_thread.run_sync(self._ready, upload_id, stored, deployment, final)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                receiver.discard()
                if upload_id is not None:
                    await anyio.to_thread.run_sync(self._failed, upload_id, _reason(exc))
            raise
        return answer

    def show(self, principal: Principal, upload_id: str) -> UploadAnswer:
        """One upload of the account, as the view holds it; another's or none -> NOT_FOUND."""
        try:
            wanted = UUID(hex=upload_id)
        except ValueError:
            raise UploadNotFound(f"No upload {upload_id!r}.") from None
        with self._views.read() as tx:
            found = upload_of(tx, principal.account_id, wanted)
        if found is None:
            raise UploadNotFound(f"No upload {upload_id} on this account.")
        view = UploadView(
            id=found.id.hex, name=found.name, model=PREFIX + found.name if found.name else None,
            status=found.status, deployment_id=ids.instance_ref(UUID(hex=found.deployment_id))
            if found.deployment_id else None, size_bytes=found.size_bytes, sha256=found.sha256,
            reason=found.reason,
        )  # fmt: skip
        return UploadAnswer(data=UploadData(upload=view))

    def _opened(self, upload_id: UUID, account: UUID, filename: str) -> None:
        self._services.uploads.open(upload_id, account, filename, _now())
        self._services.uploads.start(upload_id, _now())

    def _ready(self, upload_id: UUID, view: UploadView, deployment: UUID | None, final: Path) -> UploadAnswer:
        try:
            position = self._services.uploads.complete(
                upload_id, name=view.name or "", deployment_id=deployment, size_bytes=view.size_bytes,
                sha256=view.sha256 or "", at=_now(),
            )  # fmt: skip
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        self._follower.settle(upload_id, position)
        return UploadAnswer(data=UploadData(upload=view))

    def _failed(self, upload_id: UUID, reason: str) -> None:
        try:
            position = self._services.uploads.fail(upload_id, reason, _now())
        except ConcurrencyConflict:  # pragma: no cover - one request owns its upload
            log.warning("upload %s: its failure could not be recorded", upload_id)
            return
        # The refusal is answered once the view shows the upload failed (read-your-writes).
        self._follower.settle(upload_id, position)


def _receiver(content_type: str, folder: Path, max_bytes: int) -> Receiver:
    try:
        return Receiver(content_type, folder, max_bytes=max_bytes)
    except Refused as exc:
        raise InvalidRequest(str(exc)) from None


def _fed(receiver: Receiver, chunk: bytes) -> Fed:
    try:
        return receiver.feed(chunk)
    except Refused as exc:
        raise InvalidRequest(str(exc)) from None
    except ValueError as exc:  # python-multipart's own refusals of a malformed body
        raise InvalidRequest(f"The multipart body is malformed: {exc}.") from None


def _finished(receiver: Receiver) -> Path:
    try:
        return receiver.finish()
    except Refused as exc:
        raise InvalidRequest(str(exc)) from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, InvalidRequest | InstanceNotFound):
        return exc.message
    return f"The upload was interrupted ({type(exc).__name__})."


def byom_upload(views: ViewDatabase, account_id: str, model: str) -> UUID | None:
    """The ready upload ``byom:<name>`` names on the account; None for a catalog model."""
    if not model.startswith(PREFIX):
        return None
    with views.read() as tx:
        found = ready_upload(tx, account_id, model.removeprefix(PREFIX))
    if found is None:
        raise InvalidModel(
            f"No ready model upload called {model} on this account; POST /api/v1/public/models/upload."
        )
    return found.id
