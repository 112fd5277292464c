"""The embedded default's log readers wake for this process's appends, and still find
another process's (a recorder that does not signal) by polling."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelyard.adapters.eventlog import sources
from modelyard.adapters.eventlog.sources import NotificationLogSource
from modelyard.adapters.eventstore.env import store_env
from modelyard.adapters.eventstore.recorder import Appended, SignallingSQLiteRecorder
from modelyard.domain.accounts.service import OpenAccount
from modelyard.domain.services import Services
from modelyard.domain.shared.store import Store
from modelyard.settings import load_settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _open_later(store: Store, name: str, after_s: float) -> threading.Thread:
    def later() -> None:
        time.sleep(after_s)
        Services.over(store).accounts.open_account(OpenAccount(name=name, at=T0))

    thread = threading.Thread(target=later)
    thread.start()
    return thread


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    made = Store(env=store_env(load_settings({"MODELYARD_DATA_DIR": str(tmp_path)})))
    yield made
    made.close()


def test_an_append_in_this_process_wakes_a_reader_that_would_not_poll_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Polling for other processes' appends is pushed past the test: only the signal can wake it.
    monkeypatch.setattr(sources, "SIGNALLED_POLL_INTERVAL_S", 60.0)
    assert isinstance(store.recorder, SignallingSQLiteRecorder)  # the embedded default's
    source = NotificationLogSource(store.recorder)
    writer = _open_later(store, "woken", 0.3)
    batch = source.poll(10, timeout_s=30)
    writer.join()
    assert len(batch) == 1
    assert batch[0].topic.endswith("AccountOpened")


def test_another_recorder_on_the_same_file_is_found_by_polling(tmp_path: Path, store: Store) -> None:
    # A store whose recorder does not signal stands for another process writing the file.
    env = store_env(load_settings({"MODELYARD_DATA_DIR": str(tmp_path)}))
    env.pop("APPLICATION_RECORDER_TOPIC")
    other = Store(env=env)
    try:
        source = NotificationLogSource(store.recorder)
        writer = _open_later(other, "elsewhere", 0.3)
        batch = source.poll(10, timeout_s=30)
        writer.join()
        assert len(batch) == 1
    finally:
        other.close()


def test_a_wait_returns_at_once_for_an_append_it_has_not_seen() -> None:
    appended = Appended()
    seen = appended.count
    appended.notify()  # between the reader's count and its wait: not missed
    waiter = threading.Thread(target=appended.wait, args=(seen, 600))
    waiter.start()
    waiter.join(60)
    assert not waiter.is_alive()
