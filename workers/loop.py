"""A step repeated in a background thread: the supervisor loop every worker runs in."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)
# After a failed step, wait before the next so a broken database or broker is not hammered.
RETRY_PAUSE_S = 1.0


class BackgroundLoop:
    """Calls ``step`` until stopped; ``step`` returns how long to pause before the next call."""

    def __init__(self, name: str, step: Callable[[], float]) -> None:
        self._name, self._step = name, step
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Begin in the background."""
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pause = self._step()
            except Exception:  # the supervisor: record what failed, pause, go on
                log.exception("%s step failed; retrying", self._name)
                pause = RETRY_PAUSE_S
            if pause:
                self._stop.wait(pause)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the step in hand and stop."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
