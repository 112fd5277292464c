"""The model upload aggregate (FEATURES B9): ``pending_upload → uploading → ready`` or ``failed``.

An upload is opened once its first bytes are known to be GGUF (``pending_upload``), moves
to ``uploading`` as its bytes are written, and ends ``ready`` (its name, size and SHA-256
recorded) or ``failed`` (the reason recorded, its bytes deleted). Only a ready upload can
be served, as ``byom:<name>``; a failed one keeps nothing but its history.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from functools import singledispatch
from uuid import UUID

from modelyard.domain.catalog.models import ModelSpec, Plan, Size
from modelyard.domain.shared.errors import IllegalTransition, InvalidRequest
from modelyard.domain.shared.events import Aggregate, DomainEvent, NotThisAggregate, projector, touched

PREFIX = "byom:"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Weights up to these sizes price as the catalog's small and medium models; above, large.
SMALL_BYTES = 4 << 30
MEDIUM_BYTES = 40 << 30


class UploadStatus(StrEnum):
    """Where an upload is (the second document's names, and ``failed``)."""

    PENDING = "pending_upload"
    UPLOADING = "uploading"
    READY = "ready"
    FAILED = "failed"


class UploadOpened(DomainEvent, frozen=True, kw_only=True):
    """A GGUF upload began: its header was checked, nothing is kept yet."""

    account_id: UUID
    filename: str


class UploadStarted(DomainEvent, frozen=True, kw_only=True):
    """The upload's bytes are being written to the platform's storage."""


class UploadCompleted(DomainEvent, frozen=True, kw_only=True):
    """The whole file is stored and checked: servable as ``byom:<name>``."""

    name: str
    deployment_id: UUID | None
    size_bytes: int
    sha256: str


class UploadFailed(DomainEvent, frozen=True, kw_only=True):
    """The upload ended without a model (refused, cut off, too large); its bytes are gone."""

    reason: str


class ModelUpload(Aggregate, frozen=True, kw_only=True):
    """One uploaded GGUF model."""

    account_id: UUID
    filename: str
    status: UploadStatus = UploadStatus.PENDING
    name: str = ""
    deployment_id: UUID | None = None
    size_bytes: int = 0
    sha256: str = ""
    reason: str = ""


@singledispatch
def _mutate(event: DomainEvent, upload: ModelUpload | None) -> ModelUpload | None:
    raise NotThisAggregate(f"{type(event).__name__} is not a model upload event")


@_mutate.register
def _(event: UploadOpened, _: None) -> ModelUpload:
    return ModelUpload(
        id=event.originator_id,
        version=event.originator_version,
        created_on=event.timestamp,
        modified_on=event.timestamp,
        account_id=event.account_id,
        filename=event.filename,
    )


@_mutate.register
def _(event: UploadStarted, upload: ModelUpload) -> ModelUpload:
    return touched(upload, event, status=UploadStatus.UPLOADING)


@_mutate.register
def _(event: UploadCompleted, upload: ModelUpload) -> ModelUpload:
    return touched(
        upload,
        event,
        status=UploadStatus.READY,
        name=event.name,
        deployment_id=event.deployment_id,
        size_bytes=event.size_bytes,
        sha256=event.sha256,
    )


@_mutate.register
def _(event: UploadFailed, upload: ModelUpload) -> ModelUpload:
    return touched(upload, event, status=UploadStatus.FAILED, reason=event.reason)


project_upload = projector(_mutate)


def check_name(name: str) -> str:
    """A model name as ``byom:<name>`` takes it: 1-64 letters, digits, ``.``, ``_``, ``-``."""
    if not NAME.match(name):
        raise InvalidRequest(
            "A model name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit;"
            f" got {name!r}."
        )
    return name


def size_of(size_bytes: int) -> Size:
    """The price class of uploaded weights of this size."""
    if size_bytes <= SMALL_BYTES:
        return Size.SMALL
    return Size.MEDIUM if size_bytes <= MEDIUM_BYTES else Size.LARGE


def open_upload(upload_id: UUID, account_id: UUID, filename: str, at: datetime) -> UploadOpened:
    """A new upload of ``filename`` (its header already checked as GGUF)."""
    return UploadOpened(
        originator_id=upload_id,
        originator_version=1,
        timestamp=at,
        account_id=account_id,
        filename=filename[:256],
    )


def _next(upload: ModelUpload, allowed: tuple[UploadStatus, ...], what: str) -> int:
    if upload.status not in allowed:
        raise IllegalTransition(f"An upload that is {upload.status.value} cannot be {what}.")
    return upload.version + 1


def start_upload(upload: ModelUpload, at: datetime) -> UploadStarted:
    """The bytes are being written."""
    version = _next(upload, (UploadStatus.PENDING,), "started")
    return UploadStarted(originator_id=upload.id, originator_version=version, timestamp=at)


def complete_upload(
    upload: ModelUpload, *, name: str, deployment_id: UUID | None, size_bytes: int, sha256: str, at: datetime
) -> UploadCompleted:
    """The file is whole and stored under ``name``."""
    version = _next(upload, (UploadStatus.UPLOADING,), "completed")
    if size_bytes <= 0 or len(sha256) != 64:
        raise InvalidRequest("A completed upload has a size and a SHA-256.")
    return UploadCompleted(
        originator_id=upload.id,
        originator_version=version,
        timestamp=at,
        name=check_name(name),
        deployment_id=deployment_id,
        size_bytes=size_bytes,
        sha256=sha256,
    )


def fail_upload(upload: ModelUpload, reason: str, at: datetime) -> UploadFailed:
    """The upload ends without a model."""
    version = _next(upload, (UploadStatus.PENDING, UploadStatus.UPLOADING), "failed")
    return UploadFailed(
        originator_id=upload.id, originator_version=version, timestamp=at, reason=reason[:500]
    )


def served_model(upload: ModelUpload, account_id: UUID, model: str) -> ModelSpec:
    """The catalog entry ``byom:<name>`` stands for: the account's own ready upload, on the CPU."""
    if (
        upload.account_id != account_id
        or upload.status is not UploadStatus.READY
        or model != PREFIX + upload.name
    ):
        raise InvalidRequest(f"{model} is not a ready model upload of this account.")
    return ModelSpec(
        id=model,
        name=upload.name,
        size=size_of(upload.size_bytes),
        parameters_b=0.0,
        weights_gib=upload.size_bytes / (1 << 30),
        context_window=2048,
        plan=Plan.FREE,
        cpu=True,
    )
