"""Checking that bytes are a GGUF model, and that a stored GGUF file is whole.

``check_magic`` reads only the first bytes (the magic ``GGUF`` and a known version), so an
upload that is not GGUF is refused before anything is kept. ``check_whole`` walks the
header (metadata, tensor table) of a file on disk and checks that every tensor's data lies
inside the file: a truncated upload is refused even when its transfer ended cleanly. The
layout is GGUF's, as llama.cpp's ``gguf.h`` documents it.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

MAGIC = b"GGUF"
VERSIONS = (2, 3)
# Bytes an upload must start with before its header can be judged: magic and version.
HEAD_BYTES = 8
DEFAULT_ALIGNMENT = 32
# Metadata value types: fixed sizes; 8 is a string, 9 an array.
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_UINT32 = 4
# ggml tensor types: (elements per block, bytes per block). A type not listed is taken on
# trust for its size (its offset is still checked against the file).
_BLOCKS: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
    15: (256, 292), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 30: (1, 2),
}  # fmt: skip
# Far above any real model's counts; a header claiming more is not a model's.
MAX_ITEMS = 1 << 24


class NotGguf(ValueError):
    """The bytes are not a (whole) GGUF model; the message says why."""


def check_magic(head: bytes) -> int:
    """The GGUF version of a file starting with ``head`` (at least ``HEAD_BYTES``)."""
    if len(head) < HEAD_BYTES or head[:4] != MAGIC:
        raise NotGguf("The file is not a GGUF model (it does not start with the GGUF magic).")
    (version,) = struct.unpack("<I", head[4:8])
    if version not in VERSIONS:
        raise NotGguf(f"GGUF version {version} is not one this server reads ({VERSIONS}).")
    return int(version)


class _Reader:
    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def take(self, size: int) -> bytes:
        got = self._stream.read(size)
        if len(got) != size:
            raise NotGguf("The GGUF file ends inside its header: it is truncated.")
        return got

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack("<Q", self.take(8))[0])

    def count(self) -> int:
        value = self.u64()
        if value > MAX_ITEMS:
            raise NotGguf("The GGUF header claims more entries than any model has.")
        return value

    def string(self) -> bytes:
        return self.take(self.count())

    def value(self, kind: int) -> int | None:
        """Skip one metadata value; a uint32 is returned (the alignment is one)."""
        if kind in _FIXED:
            raw = self.take(_FIXED[kind])
            return int(struct.unpack("<I", raw)[0]) if kind == _UINT32 else None
        if kind == _STRING:
            self.string()
            return None
        if kind == _ARRAY:
            inner, length = self.u32(), self.count()
            if inner in _FIXED:
                self.take(_FIXED[inner] * length)
            else:
                for _ in range(length):
                    self.value(inner)
            return None
        raise NotGguf(f"The GGUF header has a metadata value of unknown type {kind}.")


def check_whole(path: Path) -> None:
    """Refuse a GGUF file whose header is malformed or whose tensor data runs past its end."""
    size = path.stat().st_size
    with path.open("rb") as stream:
        reader = _Reader(stream)
        check_magic(reader.take(HEAD_BYTES))
        tensors, entries = reader.count(), reader.count()
        alignment = DEFAULT_ALIGNMENT
        for _ in range(entries):
            key, kind = reader.string(), reader.u32()
            found = reader.value(kind)
            if key == b"general.alignment" and found:
                alignment = found
        end_of_data = 0
        for _ in range(tensors):
            reader.string()
            dims = [reader.u64() for _ in range(reader.u32())]
            kind, offset = reader.u32(), reader.u64()
            elements = 1
            for dim in dims:
                elements *= dim
            per_block, block_bytes = _BLOCKS.get(kind, (1, 0))
            end_of_data = max(end_of_data, offset + -(-elements // per_block) * block_bytes)
        data_start = -(-stream.tell() // alignment) * alignment
    if tensors == 0:
        raise NotGguf("The GGUF file holds no tensors: it is not a model.")
    if data_start + end_of_data > size:
        raise NotGguf(
            f"The GGUF file is truncated: its tensors need {data_start + end_of_data} bytes, it has {size}."
        )
