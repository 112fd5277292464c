"""Appends on PostgreSQL commit in the order of their notification ids.

A reader that tails the log (the relay, the projection runners) reads ids after the last
one it saw. If a writer could take an id and commit after another writer's higher id had
been read, the reader would pass it and never see it. Here several processes' stores
append at once, racing on shared accounts too, while a reader tails the log the way the
relay does; at the end every id in the log was seen, and in increasing order.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime

import pytest

from modelyard.adapters.eventstore.env import postgres_env_from_conninfo
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.services import Services
from modelyard.domain.shared.errors import ConcurrencyConflict
from modelyard.domain.shared.store import Store

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
WRITERS = 4
COMMANDS = 150


def test_a_reader_tailing_the_log_never_passes_an_event_committed_later(pg_dsn: str) -> None:
    env = postgres_env_from_conninfo(pg_dsn)
    stores = [Store(env=env) for _ in range(WRITERS + 1)]
    reader = stores[-1].recorder
    shared = Services.over(stores[0]).accounts.open_account(OpenAccount(name="shared", at=T0)).id
    done = threading.Event()
    errors: list[BaseException] = []

    def write(store: Store) -> None:
        try:
            accounts = Services.over(store).accounts
            own = accounts.open_account(OpenAccount(name="own", at=T0)).id
            for n in range(COMMANDS):
                # Every third command races the other writers on one account.
                target = shared if n % 3 == 0 else own
                # A lost race writes nothing (its id is never committed).
                with contextlib.suppress(ConcurrencyConflict):
                    accounts.add_credits(AddCredits(account_id=target, amount=1, at=T0))
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s,)) for s in stores[:WRITERS]]
    for thread in threads:
        thread.start()
    seen: list[int] = []
    position = 0
    while True:
        finished = done.is_set()
        for row in reader.select_notifications(start=position, limit=500, inclusive_of_start=False):
            seen.append(row.id)
            position = row.id
        if finished:
            break
        if not any(t.is_alive() for t in threads):
            done.set()  # one more read after the last commit
    for thread in threads:
        thread.join()
    assert not errors
    everything = [row.id for row in reader.select_notifications(start=1, limit=100_000)]
    assert len(everything) > WRITERS * COMMANDS // 2
    assert seen == sorted(seen)
    assert seen == everything  # nothing passed over: the tail saw every id, in order
    for store in stores:
        store.close()
