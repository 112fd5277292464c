"""Check an export: its chain, and with access to the events, every line against them.

The chain alone (``domain.billing.chain.verify``) catches a line changed, dropped, added
or moved by someone who did not re-compute the hashes. Whoever re-computes them (the
chain has no secret) is caught by the events: each line's digests must be those of the
stored events it names, the credit or charge event must sit at the line's position, and
its kind, account, amount, deployment and minute must be the line's. The events come from
the event store or, the same bytes, from the Kafka topic.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, StoredEvent

from modelyard.adapters.eventlog.sources import KafkaReplaySource
from modelyard.adapters.ledger.export import StoreEvents, read_export
from modelyard.domain.accounts.aggregate import CreditsAdded, CreditsCharged
from modelyard.domain.billing.chain import ChainLine, Verdict, event_digest, verify
from modelyard.domain.shared.mapper import decode_event
from modelyard.projections.common import account_ref, event_ref, iso

# Events read from Kafka per poll while indexing the topic.
_KAFKA_BATCH = 2000


class EventLookup(Protocol):
    """Where the events an export names are found again."""

    def get(self, ref: str) -> StoredEvent | None:
        """The stored event with id ``ref`` (``hex:version``), or None."""

    def ref_at(self, position: int) -> str | None:
        """The id of the event at notification ``position``, or None."""


class StoreLookup(StoreEvents):
    """Events from the event store: by id, and by position through its notification log."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        super().__init__(recorder)
        self._log = recorder

    def ref_at(self, position: int) -> str | None:
        """See :class:`EventLookup`."""
        found = self._log.select_notifications(start=position, limit=1, stop=position)
        if not found or found[0].id != position:
            return None
        return event_ref(UUID(str(found[0].originator_id)), found[0].originator_version)


class KafkaLookup:
    """Events from the whole Kafka topic, read once into memory."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._events: dict[str, StoredEvent] = {}
        self._positions: dict[int, str] = {}
        source = KafkaReplaySource(bootstrap, topic)
        try:
            while batch := source.poll(_KAFKA_BATCH, 1.0):
                for envelope in batch:
                    ref = event_ref(envelope.originator_id, envelope.originator_version)
                    self._events[ref] = StoredEvent(
                        originator_id=envelope.originator_id,
                        originator_version=envelope.originator_version,
                        topic=envelope.topic,
                        state=envelope.state,
                    )
                    self._positions[envelope.notification_id] = ref
        finally:
            source.close()

    def get(self, ref: str) -> StoredEvent | None:
        """See :class:`EventLookup`."""
        return self._events.get(ref)

    def ref_at(self, position: int) -> str | None:
        """See :class:`EventLookup`."""
        return self._positions.get(position)


def verify_export(text: str, events: EventLookup | None = None) -> Verdict:
    """The chain's verdict, then (given ``events``) each line's against the events it names.

    MalformedExport if the text is not an export at all.
    """
    lines, end = read_export(text)
    verdict = verify(lines, end)
    if events is None:
        return verdict
    checked = lines if verdict.intact else lines[: verdict.lines]
    balances: dict[str, int] = {}
    for line in checked:
        reason = next(_disagreements(line, events), None) or _running(line, balances)
        if reason is not None:
            return Verdict(lines=line.line - 1, head=line.prev, bad_line=line.line, reason=reason)
    return verdict


def _running(line: ChainLine, balances: dict[str, int]) -> str | None:
    """Why ``balance_after`` does not follow from the account's lines before (None if it does)."""
    before = balances.get(line.account_id, 0)
    after = before + (line.amount if line.kind == "credit" else -line.amount)
    balances[line.account_id] = after
    if line.balance_after != after:
        return f"line {line.line} says a balance of {line.balance_after}; its lines add up to {after}"
    return None


def _disagreements(line: ChainLine, events: EventLookup) -> Iterator[str]:
    """Why ``line`` does not match its events (nothing if it does)."""
    number = f"line {line.line}"
    if not line.events:
        yield f"{number} names no event"
        return
    for digest in line.events:
        stored = events.get(digest.ref)
        if stored is None:
            yield f"{number} names event {digest.ref}, which the events do not hold"
            return
        if event_digest(stored.topic, stored.state) != digest.sha256:
            yield f"{number}: event {digest.ref} is not the one exported (its digest differs)"
        if digest.position is not None and events.ref_at(digest.position) != digest.ref:
            yield f"{number}: event {digest.ref} is not at position {digest.position}"
    main = events.get(line.events[0].ref)
    if main is None:
        return
    event = decode_event(main.topic, main.state)
    if not isinstance(event, CreditsAdded | CreditsCharged):
        yield f"{number}: event {line.events[0].ref} is neither a credit nor a charge"
        return
    yield from _fields(line, event)


def _fields(line: ChainLine, event: CreditsAdded | CreditsCharged) -> Iterator[str]:
    number = f"line {line.line}"
    kind = "credit" if isinstance(event, CreditsAdded) else "charge"
    if line.position != line.events[0].position:
        yield f"{number}: its position is not its event's"
    if line.kind != kind:
        yield f"{number} says {line.kind}; its event is a {kind}"
    if line.account_id != account_ref(event.originator_id):
        yield f"{number} names account {line.account_id}; its event is another account's"
    if line.amount != event.amount:
        yield f"{number} says {line.amount} micro-dollars; its event says {event.amount}"
    if isinstance(event, CreditsCharged):
        if line.deployment_id != event.deployment_id.hex or line.minute != iso(event.minute):
            yield f"{number}: its deployment or minute is not its event's"
        source = event_ref(event.deployment_id, event.metered_version)
        if len(line.events) < 2 or line.events[1].ref != source:
            yield f"{number} does not name the metered minute its charge pays for ({source})"
