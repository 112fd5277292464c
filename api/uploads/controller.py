"""``POST /api/v1/public/models/upload``: a GGUF model, streamed in, served as ``byom:<name>``."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, SkipValidation

from modelyard.api.auth import Principal
from modelyard.api.errors import COMMON_ERRORS
from modelyard.api.uploads.actions import UploadAnswer, Uploads


class UploadsController(Controller):
    """Model uploads of the account (the second document's BYOM)."""

    path = "/api/v1/public/models"
    tags = ["models"]

    # The body is read as it arrives and bounded by the upload limit (MODELYARD_MAX_UPLOAD_BYTES),
    # not held whole under Litestar's.
    @post(
        "/upload",
        operation_id="uploadModel",
        status_code=201,
        responses=COMMON_ERRORS,
        request_max_body_size=None,
    )
    async def upload(
        self, uploads: NamedDependency[SkipValidation[Uploads]], request: Request[Principal, Any, Any]
    ) -> Response[UploadAnswer]:
        """Multipart ``file`` (GGUF), ``name``, ``deployment_id`` -> the upload, ``ready``, served
        as ``byom:<name>``."""
        answer = await uploads.receive(
            request.user, request.headers.get("content-type", ""), request.stream()
        )
        return Response(answer, status_code=201)

    @get(
        "/uploads/{upload_id:str}",
        operation_id="getModelUpload",
        sync_to_thread=True,
        responses=COMMON_ERRORS,
    )
    def show(
        self,
        uploads: NamedDependency[SkipValidation[Uploads]],
        request: Request[Principal, Any, Any],
        upload_id: FromPath[str],
    ) -> UploadAnswer:
        """One upload: ``pending_upload``, ``uploading``, ``ready`` or ``failed`` (with its reason)."""
        return uploads.show(request.user, upload_id)
