"""The loop that keeps the views current."""

from __future__ import annotations

from collections.abc import Callable

from modelyard.workers.loop import BackgroundLoop
from modelyard.workers.projection_runner import ProjectionRunner


class ViewsWorker(BackgroundLoop):
    """Runs the projections in a background thread until stopped.

    It is handed how to make its runner: making one opens the event source (a Kafka
    consumer joins its group), which happens when the worker starts, not when it is built.
    """

    def __init__(self, make_runner: Callable[[], ProjectionRunner]) -> None:
        self._make_runner = make_runner
        self.runner: ProjectionRunner | None = None
        super().__init__("views", self._step)

    def start(self) -> None:
        """Open the source and begin."""
        self.runner = self._make_runner()
        super().start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the batch in hand, then leave the source."""
        super().stop(timeout)
        if self.runner is not None:
            self.runner.close()

    def _step(self) -> float:
        assert self.runner is not None  # started
        self.runner.run_once(timeout_s=0.2)
        return 0.0  # the poll itself waits for events: no pause between batches
