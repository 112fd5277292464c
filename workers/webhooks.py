"""The webhook dispatcher: events in, signed deliveries out, the source's position moved last.

It reads events as every consumer does (``adapters/eventlog``): the store's notification
log in the embedded default, a Kafka consumer group on the events topic in a cluster (the
group's members share the partitions; one deployment's events are in one partition, so
one member sends them, in order). Each event that raises a webhook event
(``domain/webhooks/notices.py``) becomes one delivery per subscription that wants it and
was made before the event; ``DeliveryEngine`` sends them.

The position (Kafka's committed offset, or the log position kept in the state store) only
moves past an event once every delivery it raised is delivered, dead-lettered or
cancelled: a crash re-reads from there, and the state store's delivery rows keep what was
already acknowledged from being sent again. Dead letters re-driven by an operator are
picked up from the state store (``redrive`` rows) by whichever dispatcher claims them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

import msgspec

from modelyard.adapters.eventlog.envelope import EventEnvelope
from modelyard.adapters.eventlog.sources import EventSource
from modelyard.adapters.state import positions
from modelyard.adapters.state import webhooks as stored
from modelyard.adapters.views.db import ViewDatabase
from modelyard.adapters.views.tracking import tracked
from modelyard.domain.accounts.aggregate import Account, CreditsCharged, CreditsExhausted, project_account
from modelyard.domain.accounts.low_balance import notify_threshold
from modelyard.domain.shared import ids
from modelyard.domain.shared.store import Store
from modelyard.domain.webhooks.notices import Notice, credits_exhausted, credits_low, deployment_notice
from modelyard.projections.base import Tx
from modelyard.projections.deployments.queries import ENDED, instances_of_account
from modelyard.projections.webhooks.queries import (
    Subscription,
    subscription_by_id,
    subscriptions_of_account,
    subscriptions_of_deployment,
)
from modelyard.workers.loop import BackgroundLoop
from modelyard.workers.webhook_delivery import DeliveryEngine, Job

log = logging.getLogger(__name__)
#: The name of the embedded dispatcher's position in the state store.
POSITION_NAME = "webhooks"
# More deliveries than this in hand and the dispatcher reads no further until some finish.
MAX_OUTSTANDING = 10_000
# How often re-driven dead letters are looked for.
REDRIVE_EVERY_S = 0.5
# How long the embedded dispatcher waits for the subscriptions view to reach an event.
VIEW_WAIT_S = 5.0
_body = msgspec.json.Encoder()


class WebhookBody(msgspec.Struct, frozen=True, kw_only=True):
    """What a receiver is sent: ``id`` is also the ``webhook-id`` header."""

    id: str
    type: str
    created_at: str
    data: dict[str, object]


def delivery_id(notification_id: int, webhook_id: UUID) -> str:
    """The one id of an event's delivery to a subscription, the same on every try and re-read."""
    return f"msg_{notification_id}_{webhook_id.hex}"


@dataclass
class _Entry:
    envelope: EventEnvelope
    remaining: int


@dataclass
class Positions:
    """Which events are done, per source partition, so the position only passes finished ones."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _queues: dict[int, deque[_Entry]] = field(default_factory=dict)

    def add(self, envelope: EventEnvelope, deliveries: int) -> _Entry:
        """Track an event that raised ``deliveries`` deliveries (0: done at once)."""
        entry = _Entry(envelope, deliveries)
        with self._lock:
            self._queues.setdefault(envelope.partition, deque()).append(entry)
        return entry

    def finish(self, entry: _Entry) -> None:
        """One of the event's deliveries is final."""
        with self._lock:
            entry.remaining -= 1

    def done(self) -> list[EventEnvelope]:
        """The events, in order per partition, whose deliveries are all final, taken off."""
        ready: list[EventEnvelope] = []
        with self._lock:
            for queue in self._queues.values():
                while queue and queue[0].remaining <= 0:
                    ready.append(queue.popleft().envelope)
        return ready


class StoredLogPosition:
    """The embedded dispatcher's position in the notification log, kept in the state store."""

    def __init__(self, state: ViewDatabase) -> None:
        self._state = state

    def load(self) -> int:
        """The last notification id whose deliveries were all final."""
        with self._state.read() as tx:
            return positions.position(tx, POSITION_NAME)

    def save(self, envelopes: Sequence[EventEnvelope]) -> None:
        """Move past ``envelopes`` (in log order, so the last is the furthest)."""
        if envelopes:
            with self._state.transaction() as tx:
                positions.record(tx, POSITION_NAME, max(e.notification_id for e in envelopes))


class Notices:
    """The webhook events one stored event raises, and whom they are owed to."""

    def __init__(self, store: Store, views: ViewDatabase, credits_low_micros: int) -> None:
        self._store, self._views, self._threshold = store, views, credits_low_micros

    @staticmethod
    def raises(event: object) -> bool:
        """Whether the event raises any webhook event at all (most, a chat's usage, do not)."""
        return deployment_notice(event) is not None or isinstance(event, CreditsCharged | CreditsExhausted)

    def of(self, envelope: EventEnvelope, event: object) -> list[tuple[Notice, list[Subscription]]]:
        """Each notice of ``event`` (``envelope`` decoded) with the subscriptions it is owed to
        (made before it)."""
        notice = deployment_notice(event)
        if notice is not None:
            assert notice.deployment_id is not None
            with self._views.read() as tx:
                subs = subscriptions_of_deployment(tx, notice.deployment_id)
            return self._owed(notice, subs, envelope)
        if isinstance(event, CreditsCharged | CreditsExhausted):
            return self._account(event, envelope)
        return []

    def _account(
        self, event: CreditsCharged | CreditsExhausted, envelope: EventEnvelope
    ) -> list[tuple[Notice, list[Subscription]]]:
        account_ref = ids.public_id(ids.ACCOUNT, event.originator_id)
        with self._views.read() as tx:
            subs = subscriptions_of_account(tx, account_ref)
            live = [r.id for r in instances_of_account(tx, account_ref) if r.state not in ENDED]
        if not subs:
            return []
        notice: Notice | None
        if isinstance(event, CreditsExhausted):
            notice = credits_exhausted(
                event.originator_id, balance=event.balance, stopped=live, at=event.timestamp
            )
        else:
            # The balance right after this charge: the account as of the charge's version.
            account = self._store.repository.get(
                event.originator_id, version=event.originator_version, projector_func=project_account
            )
            assert isinstance(account, Account)
            notice = credits_low(
                event.originator_id,
                balance_after=account.balance,
                charged=event.amount,
                threshold=notify_threshold(account, self._threshold),
                at=event.timestamp,
            )
        return [] if notice is None else self._owed(notice, subs, envelope)

    @staticmethod
    def _owed(
        notice: Notice, subs: list[Subscription], envelope: EventEnvelope
    ) -> list[tuple[Notice, list[Subscription]]]:
        owed = [s for s in subs if s.wants(notice.name) and s.position < envelope.notification_id]
        return [(notice, owed)] if owed else []


def _job(notice: Notice, sub: Subscription, envelope: EventEnvelope, token: object) -> Job:
    ident = delivery_id(envelope.notification_id, sub.id)
    body = WebhookBody(
        id=ident, type=notice.name, created_at=notice.at.isoformat().replace("+00:00", "Z"), data=notice.data
    )
    now = time.time()
    delivery = stored.Delivery(
        id=ident,
        webhook_id=sub.id,
        ordering_key=notice.ordering_key,
        event=notice.name,
        notification_id=envelope.notification_id,
        body=_body.encode(body).decode(),
        status=stored.PENDING,
        attempts=(),
        created_at=now,
        updated_at=now,
    )
    return Job(delivery=delivery, url=sub.url, token=token)


class WebhookDispatcher(BackgroundLoop):
    """Reads events, hands their deliveries to the engine, commits what is final."""

    def __init__(
        self,
        open_source: Callable[[], EventSource],
        notices: Notices,
        views: ViewDatabase,
        state: ViewDatabase,
        make_engine: Callable[[Callable[[Job, str], None]], DeliveryEngine],
        *,
        log_position: StoredLogPosition | None = None,
    ) -> None:
        self._open_source, self._notices = open_source, notices
        self._views, self._state = views, state
        self._make_engine = make_engine
        self._log_position = log_position
        self._source: EventSource | None = None
        self._engine: DeliveryEngine | None = None
        self._positions = Positions()
        self._next_redrive = 0.0
        self._view_position = 0
        super().__init__("webhooks", self._step)

    def start(self) -> None:
        """Open the source and the engine, then begin."""
        self._engine = self._make_engine(self._finished)
        self._engine.start()
        self._source = self._open_source()
        super().start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop reading, cancel what is in flight (still owed), leave the source."""
        super().stop(timeout)
        if self._engine is not None:
            self._engine.stop()
        if self._source is not None:
            self._source.close()

    def _finished(self, job: Job, status: str) -> None:
        if isinstance(job.token, _Entry):
            self._positions.finish(job.token)

    def _step(self) -> float:
        assert self._source is not None  # started
        assert self._engine is not None
        self._redrive()
        polled = 0
        if self._engine.outstanding < MAX_OUTSTANDING:
            batch = self._source.poll(500, 0.2)
            polled = len(batch)
            for envelope in batch:
                self._dispatch(envelope)
        self._commit()
        return 0.0 if polled else 0.05

    def _dispatch(self, envelope: EventEnvelope) -> None:
        assert self._engine is not None
        event = envelope.decode()
        owed: list[tuple[Notice, list[Subscription]]] = []
        if self._notices.raises(event):
            if self._log_position is not None:
                # Subscriptions are read from the view: only once it has seen this event.
                self._await_views(envelope.notification_id)
            owed = self._notices.of(envelope, event)
        count = sum(len(subs) for _, subs in owed)
        entry = self._positions.add(envelope, count)
        self._engine.submit([_job(notice, sub, envelope, entry) for notice, subs in owed for sub in subs])

    def _await_views(self, notification_id: int) -> None:
        """Embedded: read subscriptions only once the view has applied up to this event."""
        if self._view_position >= notification_id:
            return
        deadline = time.monotonic() + VIEW_WAIT_S
        while time.monotonic() < deadline:
            with self._views.read() as tx:
                self._view_position = tracked(tx, "webhooks").get(0, 0)
            if self._view_position >= notification_id:
                return
            time.sleep(0.005)
        log.warning("the webhooks view is behind event %d; reading it as it is", notification_id)

    def _commit(self) -> None:
        assert self._source is not None
        done = self._positions.done()
        if not done:
            return
        self._source.commit(done)
        if self._log_position is not None:
            self._log_position.save(done)

    def _redrive(self) -> None:
        now = time.monotonic()
        if now < self._next_redrive:
            return
        self._next_redrive = now + REDRIVE_EVERY_S
        with self._state.transaction() as tx:
            claimed = stored.claim_redriven(tx, now=time.time())
        if not claimed:
            return
        with self._views.read() as tx:
            urls = {d.webhook_id: _url(tx, d.webhook_id) for d in claimed}
        assert self._engine is not None
        self._engine.submit([Job(delivery=d, url=urls[d.webhook_id] or "") for d in claimed])


def _url(tx: Tx, webhook_id: UUID) -> str | None:
    found = subscription_by_id(tx, webhook_id)
    return None if found is None else found.url
