"""Request bodies read with a nesting bound, decoded into typed Structs, refused in the client's terms.

msgspec's decoder (and Litestar's, which is msgspec's decoding into plain objects) recurses
once per array or object level and raises ``RecursionError`` when the interpreter's stack
runs out: ten thousand ``[`` were a 500. Every JSON body the API reads is first measured
here, without decoding, and refused past ``MAX_DEPTH``: the gateway's raw bodies in
``decode``, the management routes' ``data`` in the ``bounded_body`` hook, which runs
before Litestar decodes it.
"""

from __future__ import annotations

import re
from array import array
from itertools import accumulate
from typing import Any, TypeVar

import msgspec
from litestar import Request

from modelyard.api.errors import InvalidBody

# Far deeper than any request the routes take (a tool's JSON Schema nests a few levels per
# property level), far shallower than the interpreter's stack.
MAX_DEPTH = 64
T = TypeVar("T")

# A JSON string, escapes included: brackets inside strings do not nest anything.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# Each opening bracket one level down (+1), each closing one up (-1 as a signed byte).
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
# msgspec says where a value is wrong as `` - at `$.path` ``; the client gets the path apart.
_WHERE = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")


def nesting(raw: bytes) -> int:
    """How deep arrays and objects nest in a JSON text (an upper bound on text that is not JSON).

    Runs in C over the bytes (the regular expression, two translations, ``accumulate``):
    a 10 MB body costs about a tenth of a second.
    """
    steps = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS).translate(_STEPS)
    return max(accumulate(array("b", steps)), default=0)


def check_nesting(raw: bytes) -> None:
    """Refuse a body nested deeper than ``MAX_DEPTH`` with INVALID_REQUEST."""
    # Fewer opening brackets than the bound cannot nest past it: most bodies stop here.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and nesting(raw) > MAX_DEPTH:
        raise InvalidBody(f"The body nests arrays and objects more than {MAX_DEPTH} levels deep.")


def decode(raw: bytes, kind: type[T]) -> T:
    """The body as ``kind``, or INVALID_REQUEST saying what is wrong and where."""
    if not raw:
        raise InvalidBody("The body is empty: send a JSON object.")
    check_nesting(raw)
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise invalid(str(exc)) from None
    except msgspec.DecodeError:
        raise InvalidBody("The body is not valid JSON.") from None


def invalid(problem: str) -> InvalidBody:
    """msgspec's account of a wrong value (``Expected `int`, got `str` - at `$.n` ``) as the
    client's error: the problem, and the field apart as ``param``."""
    where = _WHERE.search(problem)
    if where is None or not where["path"]:
        return InvalidBody(f"Invalid body: {problem[: where.start()] if where else problem}.")
    return InvalidBody(f"{problem[: where.start()]} (at {where['path']}).", param=where["path"])


async def bounded_body(request: Request[Any, Any, Any]) -> None:
    """Litestar ``before_request`` hook: measure the body before the route's ``data`` is decoded.

    Runs after the route's guards, so an unauthenticated caller never has its body read.
    """
    check_nesting(await request.body())
