"""The GGUF checks on the bundled SmolLM2 file and cut copies of it, the multipart receiver,
and the upload lifecycle's rules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelyard.adapters.engines.models import gguf_paths
from modelyard.adapters.uploads.gguf import NotGguf, check_magic, check_whole
from modelyard.adapters.uploads.receiver import Receiver, Refused
from modelyard.domain.catalog.models import Size
from modelyard.domain.shared.errors import IllegalTransition, InvalidRequest
from modelyard.domain.uploads import aggregate as uploads

GGUF = Path(gguf_paths("")["smollm2-135m"])
AT = datetime(2026, 11, 1, tzinfo=UTC)


def test_the_bundled_model_is_whole_and_any_cut_is_refused(tmp_path: Path) -> None:
    check_whole(GGUF)
    data = GGUF.read_bytes()
    assert check_magic(data[:8]) == 3
    for keep in (len(data) - 1, len(data) // 2, 64):
        cut = tmp_path / f"cut-{keep}.gguf"
        cut.write_bytes(data[:keep])
        with pytest.raises(NotGguf, match="truncated"):
            check_whole(cut)
    with pytest.raises(NotGguf, match="magic"):
        check_magic(b"PK\x03\x04zipfile")


def _body(boundary: str, content: bytes, name: str = "m") -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="m.gguf"\r\n\r\n'.encode()
        + content
        + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n'.encode()
        + f"{name}\r\n--{boundary}--\r\n".encode()
    )


def test_the_receiver_streams_a_model_to_disk_and_refuses_past_its_limit(tmp_path: Path) -> None:
    content = GGUF.read_bytes()[: 1 << 20]
    receiver = Receiver("multipart/form-data; boundary=b0", tmp_path, max_bytes=1 << 21)
    body = _body("b0", content)
    seen = [receiver.feed(body[i : i + 4096]).gguf_seen for i in range(0, len(body), 4096)]
    assert seen.count(True) == 1
    assert receiver.fields == {"name": "m"}
    assert receiver.size == len(content)
    with pytest.raises(Refused, match="truncated"):  # a megabyte of the model is not the model
        receiver.finish()
    receiver.discard()
    assert list(tmp_path.iterdir()) == []

    small = Receiver("multipart/form-data; boundary=b1", tmp_path, max_bytes=1000)
    with pytest.raises(Refused, match="upload limit"):
        small.feed(_body("b1", content))
    small.discard()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(Refused, match="multipart/form-data"):
        Receiver("application/json", tmp_path, max_bytes=10)


def test_an_upload_moves_pending_uploading_ready_or_failed_once() -> None:
    account = uuid.uuid4()
    opened = uploads.open_upload(uuid.uuid4(), account, "m.gguf", AT)
    upload = uploads.project_upload(None, [opened])
    assert upload is not None
    assert upload.status is uploads.UploadStatus.PENDING
    with pytest.raises(IllegalTransition):
        uploads.complete_upload(upload, name="m", deployment_id=None, size_bytes=1, sha256="0" * 64, at=AT)
    started = uploads.start_upload(upload, AT)
    upload = uploads.project_upload(upload, [started])
    assert upload is not None
    with pytest.raises(InvalidRequest, match="model name"):
        uploads.complete_upload(upload, name="a b", deployment_id=None, size_bytes=1, sha256="0" * 64, at=AT)
    done = uploads.complete_upload(
        upload, name="m-1", deployment_id=None, size_bytes=5 << 30, sha256="a" * 64, at=AT
    )
    ready = uploads.project_upload(upload, [done])
    assert ready is not None
    assert ready.status is uploads.UploadStatus.READY
    with pytest.raises(IllegalTransition):
        uploads.fail_upload(ready, "late", AT)
    served = uploads.served_model(ready, account, "byom:m-1")
    assert (served.size, served.cpu) == (Size.MEDIUM, True)
    with pytest.raises(InvalidRequest):
        uploads.served_model(ready, uuid.uuid4(), "byom:m-1")  # another account's model
