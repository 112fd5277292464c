"""The tamper-evident ledger export: every line chained to the one before and to its events.

A line's hash is SHA-256 over the previous line's hash and the line's fields, the digests
of the stored events it came from among them (an event's digest is SHA-256 over its topic
and its stored bytes, so the store and Kafka, which carry the same bytes, give the same
digest). Changing a field, dropping, inserting or reordering lines breaks the chain at the
first line touched; the closing line carries the chain head and the line count, so a
truncated export is caught too. Pure: formats (CSV, JSON lines) and sources live outside.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import msgspec

#: The ``prev`` of the first line: no line before it.
GENESIS = "0" * 64
#: The fields of a line in the order they are hashed (and written as CSV columns).
FIELDS = (
    "line", "position", "account_id", "kind", "amount", "balance_after",
    "deployment_id", "minute", "at", "events",
)  # fmt: skip
#: What the closing line's ``kind`` says.
END = "end"
# Separates fields inside the hashed text; no field value contains it (ids, digits, ISO times).
_UNIT = "\x1f"


class EventDigest(msgspec.Struct, frozen=True, kw_only=True):
    """One stored event a line came from: its id (aggregate hex:version), position if known, digest."""

    ref: str
    position: int | None
    sha256: str

    def text(self) -> str:
        """The digest as the CSV column and the hash input write it: ``ref@position@sha256``."""
        return f"{self.ref}@{'' if self.position is None else self.position}@{self.sha256}"

    @classmethod
    def parse(cls, text: str) -> EventDigest:
        """The digest written by :meth:`text`; ValueError if it is not one."""
        ref, position, digest = text.split("@")
        return cls(ref=ref, position=int(position) if position else None, sha256=digest)


class ChainEnd(msgspec.Struct, frozen=True, kw_only=True):
    """The closing line: how many lines the chain has and the hash of the last."""

    kind: str = END
    lines: int
    head: str


class Unchained(msgspec.Struct, frozen=True, kw_only=True):
    """A ledger line before it is chained: what the ledger view and the stored events give."""

    position: int
    account_id: str
    kind: str
    amount: int
    balance_after: int
    deployment_id: str | None
    minute: str | None
    at: str
    events: tuple[EventDigest, ...]


class ChainLine(Unchained, frozen=True, kw_only=True):
    """One exported credit or charge with its place in the chain."""

    line: int
    prev: str
    hash: str


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """What verifying an export found: the first bad line (1-based, as exported) and why."""

    lines: int
    head: str
    bad_line: int | None = None
    reason: str = ""

    @property
    def intact(self) -> bool:
        """Whether every line, and the closing line, is as exported."""
        return self.bad_line is None


def event_digest(topic: str, state: bytes) -> str:
    """The SHA-256 of one stored event: its topic, a newline, its stored bytes."""
    return hashlib.sha256(topic.encode() + b"\n" + state).hexdigest()


def _values(line: Unchained, number: int) -> list[str]:
    return [
        str(number), str(line.position), line.account_id, line.kind, str(line.amount),
        str(line.balance_after), line.deployment_id or "", line.minute or "", line.at,
        ";".join(e.text() for e in line.events),
    ]  # fmt: skip


def line_hash(prev: str, line: Unchained, number: int) -> str:
    """The hash of line ``number`` after a line hashed ``prev``."""
    text = _UNIT.join([prev, *_values(line, number)])
    return hashlib.sha256(text.encode()).hexdigest()


def chain(lines: Iterable[Unchained]) -> tuple[list[ChainLine], ChainEnd]:
    """Number and chain ``lines`` in the order given; the closing line names the head."""
    chained: list[ChainLine] = []
    prev = GENESIS
    for number, line in enumerate(lines, start=1):
        digest = line_hash(prev, line, number)
        fields = msgspec.structs.asdict(line)
        chained.append(ChainLine(line=number, prev=prev, hash=digest, **fields))
        prev = digest
    return chained, ChainEnd(lines=len(chained), head=prev)


def verify(lines: Sequence[ChainLine], end: ChainEnd | None) -> Verdict:
    """Re-compute the chain of ``lines``; name the first line that is not as exported.

    A line is bad when its number is not its place, its ``prev`` is not the hash of the line
    before, or its ``hash`` is not the hash of its own fields. The closing line must be there
    and agree on the count and the head: otherwise the line after the last good one is named.
    """
    prev = GENESIS
    for place, line in enumerate(lines, start=1):
        if line.line != place:
            return _bad(place, prev, f"line {place} says it is line {line.line}: lines were dropped or moved")
        if line.prev != prev:
            return _bad(place, prev, f"line {place} does not follow the line before it")
        if line.hash != line_hash(prev, line, place):
            return _bad(place, prev, f"line {place} was changed after export: its hash does not match")
        prev = line.hash
    count = len(lines)
    if end is None:
        return _bad(count + 1, prev, "the closing line is missing: the export was cut short")
    if end.lines != count or end.head != prev:
        return _bad(count + 1, prev, f"the closing line names {end.lines} lines and another head")
    return Verdict(lines=count, head=prev)


def _bad(number: int, head: str, reason: str) -> Verdict:
    return Verdict(lines=number - 1, head=head, bad_line=number, reason=reason)
