"""A multipart upload read as it arrives: small fields kept in memory, the ``file`` part
checked as GGUF by its first bytes and then streamed to a private temporary file, hashed and
counted on the way, never held whole in memory.

``Receiver.feed`` takes the body chunk by chunk and says what happened (``Fed``): the
caller records the upload's events at the right moments and decides when to stop. Any
refusal is a ``Refused`` with the reason for the client; ``discard`` removes whatever was
written. ``keep`` moves a finished file to its final place.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import IO, Any

import msgspec
from python_multipart.multipart import MultipartParser, parse_options_header

from modelyard.adapters.uploads.gguf import HEAD_BYTES, NotGguf, check_magic, check_whole

# Small form fields (name, deployment_id) are bounded: a field is a name, not a payload.
MAX_FIELD_BYTES = 1024
FILE_FIELD = "file"


class Refused(ValueError):
    """The upload cannot be kept; the message says why, in the client's terms."""


class Fed(msgspec.Struct, kw_only=True):
    """What the body so far holds."""

    # The file's header was checked as GGUF in this chunk: the upload can be opened now.
    gguf_seen: bool = False
    # The closing boundary arrived: the whole body is in.
    complete: bool = False


def boundary_of(content_type: str) -> bytes:
    """The multipart boundary of a ``Content-Type``; anything but multipart/form-data is refused."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise Refused(
            "Send the model as multipart/form-data with the fields 'file', 'name' and 'deployment_id'."
        )
    return boundary


class Receiver:
    """One upload's multipart body, fed in chunks; the file goes to ``folder`` as it comes."""

    def __init__(self, content_type: str, folder: Path, *, max_bytes: int) -> None:
        self._folder, self._max = folder, max_bytes
        self.fields: dict[str, str] = {}
        self.filename = ""
        self.size = 0
        self._hash = hashlib.sha256()
        self._head = b""
        self._part: str | None = None
        self._field = bytearray()
        self._headers: dict[str, str] = {}
        self._header_name = b""
        self._header_value = b""
        self._file: IO[bytes] | None = None
        self.path: Path | None = None
        self._files = 0
        self._fed = Fed()
        self._parser = MultipartParser(boundary_of(content_type), self._callbacks())

    def _callbacks(self) -> Any:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._add_header_name(data[start:end]),
            "on_header_value": lambda data, start, end: self._add_header_value(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda data, start, end: self._data(data[start:end]),
            "on_part_end": self._end,
            "on_end": self._done,
        }

    # --- parser callbacks -----------------------------------------------------------------

    def _begin(self) -> None:
        self._headers, self._part, self._field = {}, None, bytearray()

    def _add_header_name(self, data: bytes) -> None:
        self._header_name += data

    def _add_header_value(self, data: bytes) -> None:
        self._header_value += data

    def _header_end(self) -> None:
        name = self._header_name.decode("latin-1").lower()
        self._headers[name] = self._header_value.decode("latin-1")
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        self._part = options.get(b"name", b"").decode("utf-8", "replace")
        if self._part == FILE_FIELD:
            self._files += 1
            if self._files > 1:
                raise Refused("Send one file per upload.")
            self.filename = options.get(b"filename", b"").decode("utf-8", "replace")

    def _data(self, data: bytes) -> None:
        if self._part != FILE_FIELD:
            self._field += data
            if len(self._field) > MAX_FIELD_BYTES:
                raise Refused(f"The field {self._part!r} is longer than {MAX_FIELD_BYTES} bytes.")
            return
        self.size += len(data)
        if self.size > self._max:
            raise Refused(f"The file is larger than this server's upload limit of {self._max} bytes.")
        self._hash.update(data)
        if self._file is None:
            self._head += data
            if len(self._head) >= HEAD_BYTES:
                try:
                    check_magic(self._head)
                except NotGguf as exc:
                    raise Refused(str(exc)) from None
                self._open()
                self._fed.gguf_seen = True
            return
        self._file.write(data)

    def _open(self) -> None:
        self._folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Set before the file exists, so ``discard`` finds it whatever happens next.
        self.path = self._folder / f".upload-{os.urandom(8).hex()}.part"
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(descriptor, "wb")
        self._file.write(self._head)
        self._head = b""

    def _end(self) -> None:
        if self._part == FILE_FIELD:
            if self._file is None:
                raise Refused("The file is empty." if self.size == 0 else "The file is too short to be GGUF.")
        elif self._part:
            self.fields[self._part] = self._field.decode("utf-8", "replace")

    def _done(self) -> None:
        self._fed.complete = True

    # --- the caller's side ----------------------------------------------------------------

    def feed(self, chunk: bytes) -> Fed:
        """Parse one chunk of the body; what it brought."""
        self._fed = Fed(complete=self._fed.complete)
        self._parser.write(chunk)
        return self._fed

    @property
    def sha256(self) -> str:
        """The hex SHA-256 of the file's bytes so far."""
        return self._hash.hexdigest()

    def finish(self) -> Path:
        """The whole file, checked: the body must have ended and the GGUF be whole."""
        if not self._fed.complete:
            raise Refused("The upload ended before the multipart body did: it is truncated.")
        if self._files == 0 or self.path is None:
            raise Refused("The multipart field 'file' (the GGUF model) is missing.")
        self._close()
        try:
            check_whole(self.path)
        except NotGguf as exc:
            raise Refused(str(exc)) from None
        return self.path

    def _close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def discard(self) -> None:
        """Remove whatever was written; safe to call at any point, and twice."""
        if self._file is not None and not self._file.closed:
            self._file.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def keep(path: Path, final: Path) -> None:
    """Move a finished upload to its final name (same folder: one atomic rename)."""
    os.replace(path, final)


def upload_path(data_dir: Path, upload_id: str) -> Path:
    """Where the model of a ready upload lives."""
    return data_dir / "models" / f"{upload_id}.gguf"
