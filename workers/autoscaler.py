"""The autoscaler: polls each running deployment's replicas and records what capacity it needs.

Every ``interval_s`` it reads, from the views, the running deployments whose autoscaling
policy was set, and from each of their replicas the engine's Prometheus metrics
(``vllm:num_requests_waiting``, ``vllm:num_requests_running``, the TTFT histogram: the
names vLLM, llama.cpp and simulated replicas all expose). The sums make one ``Sample``;
``domain.deployments.autoscaling.decide`` says what to do, and the decision is recorded as
an event with its reason: ``ScaleRequested`` (the reconciler then starts or stops replicas
and reports ``ScaledTo``) or ``ScaledToZero`` (the reconciler stops them; billing stopped
with the event). A deployment that leaves ``running`` (scaling, degraded, scaled to zero)
is forgotten and watched afresh when it runs again, so a scale is never decided on figures
of the capacity before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

import httpx

from modelyard.adapters.engines.base import EngineStats, parse_metrics
from modelyard.adapters.views.db import ViewDatabase
from modelyard.domain.deployments.autoscaling import Decision, Sample, Tuning, decide
from modelyard.domain.deployments.service import DeploymentsService, WithCapacity, WithReason
from modelyard.domain.shared.errors import DomainError
from modelyard.projections.deployments.queries import ReplicaRoute, Watched, running_deployments
from modelyard.workers.loop import BackgroundLoop

log = logging.getLogger(__name__)
# A replica's /metrics is a loopback call that answers in milliseconds; one that takes longer
# than this is busy or gone, and is left out of this poll.
METRICS_TIMEOUT_S = 2.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


def read_metrics(client: httpx.Client, route: ReplicaRoute) -> EngineStats | None:
    """One replica's engine figures, or None when it does not answer them."""
    headers = {"Authorization": f"Bearer {route.token}"} if route.token else {}
    try:
        response = client.get(f"{route.base_url}/metrics", headers=headers, timeout=METRICS_TIMEOUT_S)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return parse_metrics(response.text)


class _Watch:
    """What the autoscaler remembers of one running deployment since it began watching it."""

    def __init__(self, capacity: int, now: datetime) -> None:
        self.capacity = capacity
        self.idle_since = now
        self.samples: list[Sample] = []
        self.last: dict[str, EngineStats] = {}


class Autoscaler:
    """Decides, per poll, each autoscaled deployment's capacity; ``run_once`` is one poll."""

    def __init__(
        self,
        deployments: DeploymentsService,
        views: ViewDatabase,
        tuning: Tuning,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._deployments, self._views, self._tuning, self._clock = deployments, views, tuning, clock
        self._watches: dict[UUID, _Watch] = {}
        self._client = httpx.Client()

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def run_once(self) -> dict[UUID, Decision]:
        """Poll every running autoscaled deployment; returns the decisions recorded."""
        with self._views.read() as tx:
            running = [w for w in running_deployments(tx) if w.policy is not None]
        for gone in set(self._watches) - {w.id for w in running}:
            del self._watches[gone]
        recorded: dict[UUID, Decision] = {}
        for target in running:
            decision = self._poll(target)
            if decision is not None and self._record(target, decision):
                recorded[target.id] = decision
        return recorded

    def _poll(self, target: Watched) -> Decision | None:
        now = self._clock()
        watch = self._watches.get(target.id)
        if watch is None or watch.capacity != target.capacity:
            watch = self._watches[target.id] = _Watch(target.capacity, now)
        sample = self._sample(watch, target, now)
        if sample.concurrency or sample.started or not sample.complete:
            watch.idle_since = now  # a replica that did not answer may be busy: not idle
        watch.samples.append(sample)
        # Keep the down window and the one sample before it (which shows the window is covered).
        start = now - timedelta(seconds=self._tuning.down_window_s)
        inside = [i for i, s in enumerate(watch.samples) if s.at >= start]
        watch.samples = watch.samples[max(0, inside[0] - 1) :] if inside else watch.samples[-1:]
        assert target.policy is not None
        return decide(
            target.policy,
            target.capacity,
            watch.samples,
            now=now,
            idle_since=watch.idle_since,
            tuning=self._tuning,
            ttft_target_ms=target.sla.ttft_target_ms,
        )

    def _sample(self, watch: _Watch, target: Watched, now: datetime) -> Sample:
        waiting = running = started = 0
        ttft_s = 0.0
        seen: dict[str, EngineStats] = {}
        complete = True
        for route in target.replicas:
            stats = read_metrics(self._client, route)
            if stats is None:
                complete = False
                continue
            seen[route.replica] = stats
            before = watch.last.get(route.replica)
            waiting += stats.waiting
            running += stats.running
            started += stats.ttft_count - (before.ttft_count if before else 0)
            ttft_s += stats.ttft_sum_s - (before.ttft_sum_s if before else 0.0)
        watch.last = seen
        ttft_ms = ttft_s * 1000 / started if started > 0 else None
        return Sample(
            at=now, waiting=waiting, running=running, started=started, ttft_ms=ttft_ms, complete=complete
        )

    def _record(self, target: Watched, decision: Decision) -> bool:
        at = self._clock()
        try:
            if decision.capacity == 0:
                self._deployments.scale_to_zero(
                    WithReason(deployment_id=target.id, reason=decision.reason, at=at)
                )
            else:
                self._deployments.request_scale(
                    WithCapacity(
                        deployment_id=target.id, capacity=decision.capacity, reason=decision.reason, at=at
                    )
                )
        except DomainError as exc:
            # The state moved (a teardown, a manual scale) or credit or quota refuses a bigger
            # capacity: nothing was recorded; the next poll decides again on what it finds.
            log.info("autoscaler: %s to %d not recorded: %s", target.id, decision.capacity, exc.message)
            return False
        log.info("autoscaler: %s to %d replicas: %s", target.id, decision.capacity, decision.reason)
        self._watches.pop(target.id, None)
        return True


class AutoscalerWorker(BackgroundLoop):
    """Runs the autoscaler every ``interval_s`` in a background thread until stopped."""

    def __init__(self, autoscaler: Autoscaler, interval_s: float) -> None:
        self.autoscaler, self._interval_s = autoscaler, interval_s
        super().__init__("autoscaler", self._step)

    def _step(self) -> float:
        self.autoscaler.run_once()
        return self._interval_s

    def stop(self, timeout: float = 30.0) -> None:
        """Stop polling and close the HTTP client."""
        super().stop(timeout)
        self.autoscaler.close()
