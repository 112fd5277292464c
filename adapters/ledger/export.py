"""Write the ledger as a chained export (CSV or JSON lines) and read one back.

Each line names the stored events it came from with their digests (``domain.billing.chain``):
a credit its ``CreditsAdded``; a charge its ``CreditsCharged`` and the deployment's
``MinuteMetered`` that the charge pays for. The digests are read from the event store,
one read per aggregate.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from enum import StrEnum
from uuid import UUID

import msgspec
from eventsourcing.persistence import ApplicationRecorder, StoredEvent

from modelyard.domain.billing.chain import (
    END,
    FIELDS,
    ChainEnd,
    ChainLine,
    EventDigest,
    Unchained,
    chain,
    event_digest,
)
from modelyard.projections.balances.queries import ExportRow

_line_encoder = msgspec.json.Encoder()
_line_decoder = msgspec.json.Decoder(dict[str, object])
#: CSV columns: the hashed fields, then the chain's own two.
COLUMNS = (*FIELDS, "prev", "hash")


class ExportFormat(StrEnum):
    """How an export is written."""

    CSV = "csv"
    JSONL = "jsonl"

    @property
    def media_type(self) -> str:
        """The HTTP content type of the format."""
        return "text/csv; charset=utf-8" if self is ExportFormat.CSV else "application/jsonl"


class MalformedExport(ValueError):
    """The export cannot be read as one: it names the line it could not parse."""


def split_ref(ref: str) -> tuple[UUID, int]:
    """The aggregate id and version of an event id as the ledger writes it (``hex:version``)."""
    aggregate, _, version = ref.partition(":")
    return UUID(hex=aggregate), int(version)


class StoreEvents:
    """Stored events by id, read from the event store one aggregate at a time."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        self._recorder = recorder
        self._aggregates: dict[UUID, dict[int, StoredEvent]] = {}

    def get(self, ref: str) -> StoredEvent | None:
        """The stored event ``ref`` names, or None if the store has no such event."""
        try:
            aggregate, version = split_ref(ref)
        except ValueError:
            return None
        if aggregate not in self._aggregates:
            stored = self._recorder.select_events(aggregate)
            self._aggregates[aggregate] = {e.originator_version: e for e in stored}
        return self._aggregates[aggregate].get(version)

    def digest(self, ref: str, position: int | None) -> EventDigest:
        """The digest of event ``ref``; LookupError if the store lacks it."""
        stored = self.get(ref)
        if stored is None:
            raise LookupError(f"the ledger names event {ref}, which the event store does not hold")
        return EventDigest(ref=ref, position=position, sha256=event_digest(stored.topic, stored.state))


def unchained(rows: Iterable[ExportRow], events: StoreEvents) -> Iterator[Unchained]:
    """The ledger rows with the digests of the events each came from."""
    for row in rows:
        digests = [events.digest(row.event_id, row.position)]
        if row.source_event is not None:
            digests.append(events.digest(row.source_event, None))
        yield Unchained(
            position=row.position,
            account_id=row.account_id,
            kind=row.kind,
            amount=row.amount,
            balance_after=row.balance_after,
            deployment_id=row.deployment_id,
            minute=row.minute,
            at=row.at,
            events=tuple(digests),
        )


def export_text(rows: Iterable[ExportRow], events: StoreEvents, fmt: ExportFormat) -> Iterator[str]:
    """The export, line by line (each ending in a newline), closing line last."""
    lines, end = chain(unchained(rows, events))
    return write_export(lines, end, fmt)


def write_export(lines: Iterable[ChainLine], end: ChainEnd, fmt: ExportFormat) -> Iterator[str]:
    """Chained lines and their closing line as text in ``fmt``, each ending in a newline."""
    if fmt is ExportFormat.JSONL:
        for line in lines:
            yield _line_encoder.encode(line).decode() + "\n"
        yield _line_encoder.encode(end).decode() + "\n"
        return
    yield _csv_row(COLUMNS)
    for line in lines:
        yield _csv_row(str(v) for v in _csv_values(line))
    closing = [str(end.lines), "", "", END, "", "", "", "", "", "", "", end.head]
    yield _csv_row(closing)


def _csv_values(line: ChainLine) -> list[object]:
    return [
        line.line, line.position, line.account_id, line.kind, line.amount, line.balance_after,
        line.deployment_id or "", line.minute or "", line.at, ";".join(e.text() for e in line.events),
        line.prev, line.hash,
    ]  # fmt: skip


def _csv_row(values: Iterable[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue()


def read_export(text: str) -> tuple[list[ChainLine], ChainEnd | None]:
    """The lines and closing line of an export in either format; MalformedExport names a bad line."""
    if text.lstrip().startswith("{"):
        return _read_jsonl(text)
    return _read_csv(text)


def _read_jsonl(text: str) -> tuple[list[ChainLine], ChainEnd | None]:
    lines: list[ChainLine] = []
    end: ChainEnd | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            fields = _line_decoder.decode(raw)
            parsed: ChainLine | ChainEnd
            if fields.get("kind") == END and "head" in fields:
                parsed = msgspec.convert(fields, ChainEnd)
            else:
                parsed = msgspec.convert(fields, ChainLine)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise MalformedExport(f"line {number} is not an export line: {exc}") from None
        if end is not None:
            raise MalformedExport(f"line {number} comes after the closing line")
        if isinstance(parsed, ChainEnd):
            end = parsed
        else:
            lines.append(parsed)
    return lines, end


def _read_csv(text: str) -> tuple[list[ChainLine], ChainEnd | None]:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(rows[0]) != COLUMNS:
        raise MalformedExport(f"the first row is not the export's header ({','.join(COLUMNS)})")
    lines: list[ChainLine] = []
    end: ChainEnd | None = None
    for number, row in enumerate(rows[1:], start=1):
        if end is not None:
            raise MalformedExport(f"line {number} comes after the closing line")
        try:
            if len(row) != len(COLUMNS):
                raise ValueError(f"{len(row)} columns, not {len(COLUMNS)}")
            values = dict(zip(COLUMNS, row, strict=True))
            if values["kind"] == END:
                end = ChainEnd(lines=int(values["line"]), head=values["hash"])
            else:
                lines.append(_csv_line(values))
        except (ValueError, msgspec.ValidationError) as exc:
            raise MalformedExport(f"line {number} is not an export line: {exc}") from None
    return lines, end


def _csv_line(values: dict[str, str]) -> ChainLine:
    events = tuple(EventDigest.parse(text) for text in values["events"].split(";") if text)
    return ChainLine(
        line=int(values["line"]),
        position=int(values["position"]),
        account_id=values["account_id"],
        kind=values["kind"],
        amount=int(values["amount"]),
        balance_after=int(values["balance_after"]),
        deployment_id=values["deployment_id"] or None,
        minute=values["minute"] or None,
        at=values["at"],
        events=events,
        prev=values["prev"],
        hash=values["hash"],
    )
