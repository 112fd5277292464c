"""The SLA evaluator: each window, every running deployment's measured TTFT and throughput
against its targets; breaches and recoveries are recorded as events with the figures.

Each window it reads, from the views, the running deployments with an SLA target, and from
each of their replicas the engine's Prometheus metrics. The window's figures come from the
difference between two readings of a replica: mean TTFT is the TTFT histogram's sum over its
count of the requests that got their first token in the window; throughput is the tokens
generated for requests completed in the window over the time those requests spent from their
first token to their last (``vllm:request_decode_time_seconds``): the rate a client's stream
ran at. ``DeploymentsService.judge_sla`` (``domain.deployments.sla``) decides what is a
breach or a recovery and records it. A replica seen for the first time is measured from its
start; a deployment that leaves ``running`` is forgotten and measured afresh.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

import httpx

from modelyard.adapters.engines.base import EngineStats
from modelyard.adapters.views.db import ViewDatabase
from modelyard.domain.deployments.service import DeploymentsService, SlaWindow
from modelyard.domain.deployments.sla import Measured, Verdict
from modelyard.domain.shared.errors import DomainError
from modelyard.projections.deployments.queries import Watched, running_deployments
from modelyard.workers.autoscaler import read_metrics
from modelyard.workers.loop import BackgroundLoop

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def measure(before: dict[str, EngineStats], now: dict[str, EngineStats]) -> Measured:
    """A window's figures from each replica's reading at its start (if any) and at its end."""
    started = generated = 0
    ttft_s = decode_s = 0.0
    for replica, stats in now.items():
        earlier = before.get(replica)
        started += stats.ttft_count - (earlier.ttft_count if earlier else 0)
        ttft_s += stats.ttft_sum_s - (earlier.ttft_sum_s if earlier else 0.0)
        generated += stats.generation_tokens - (earlier.generation_tokens if earlier else 0)
        decode_s += stats.decode_time_s - (earlier.decode_time_s if earlier else 0.0)
    return Measured(
        ttft_ms=ttft_s * 1000 / started if started > 0 else None,
        throughput_tps=generated / decode_s if decode_s > 0 else None,
    )


class SlaEvaluator:
    """Judges each running deployment's last window; ``run_once`` closes one window."""

    def __init__(
        self, deployments: DeploymentsService, views: ViewDatabase, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self._deployments, self._views, self._clock = deployments, views, clock
        self._readings: dict[UUID, dict[str, EngineStats]] = {}
        self._client = httpx.Client()

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def run_once(self) -> dict[UUID, list[Verdict]]:
        """Close the window of every running deployment with a target; the verdicts recorded."""
        with self._views.read() as tx:
            running = [w for w in running_deployments(tx) if _has_target(w)]
        for gone in set(self._readings) - {w.id for w in running}:
            del self._readings[gone]
        recorded: dict[UUID, list[Verdict]] = {}
        for target in running:
            readings = {}
            for route in target.replicas:
                stats = read_metrics(self._client, route)
                if stats is not None:
                    readings[route.replica] = stats
            measured = measure(self._readings.get(target.id, {}), readings)
            self._readings[target.id] = readings
            try:
                judged = self._deployments.judge_sla(
                    SlaWindow(deployment_id=target.id, measured=measured, at=self._clock())
                )
            except DomainError as exc:
                log.info("sla: %s not judged: %s", target.id, exc.message)
                continue
            for verdict in judged.verdicts:
                log.info(
                    "sla: %s %s %s: %.1f against %.1f",
                    target.id,
                    verdict.metric,
                    "breached" if verdict.breached else "recovered",
                    verdict.value,
                    verdict.target,
                )
            if judged.verdicts:
                recorded[target.id] = judged.verdicts
        return recorded


def _has_target(watched: Watched) -> bool:
    return watched.sla.ttft_target_ms is not None or watched.sla.throughput_target_tps is not None


class SlaWorker(BackgroundLoop):
    """Runs the SLA evaluator once a window in a background thread until stopped."""

    def __init__(self, evaluator: SlaEvaluator, window_s: float) -> None:
        self.evaluator, self._window_s = evaluator, window_s
        super().__init__("sla", self._step)

    def _step(self) -> float:
        self.evaluator.run_once()
        return self._window_s

    def stop(self, timeout: float = 30.0) -> None:
        """Stop judging and close the HTTP client."""
        super().stop(timeout)
        self.evaluator.close()
