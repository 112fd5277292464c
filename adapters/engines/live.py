"""What a deployment's replicas say about themselves right now, from their Prometheus ``/metrics``.

Every engine exposes vLLM's metric names (``base.parse_metrics``); a replica answers only
calls that carry its token. A replica that does not answer in time is left out: the
figures are then those of the replicas that did.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from modelyard.adapters.engines.base import EngineStats, parse_metrics
from modelyard.projections.deployments.queries import ReplicaRoute

# A metrics read is a local call answered from memory; longer means the replica is stuck.
READ_TIMEOUT_S = 2.0


def _sum(stats: Sequence[EngineStats]) -> EngineStats:
    buckets: dict[float, int] = {}
    for one in stats:
        for bound, count in one.ttft_buckets.items():
            buckets[bound] = buckets.get(bound, 0) + count
    return EngineStats(
        running=sum(s.running for s in stats),
        waiting=sum(s.waiting for s in stats),
        prompt_tokens=sum(s.prompt_tokens for s in stats),
        generation_tokens=sum(s.generation_tokens for s in stats),
        ttft_count=sum(s.ttft_count for s in stats),
        ttft_sum_s=sum(s.ttft_sum_s for s in stats),
        ttft_buckets=buckets,
    )


def read_replicas(routes: Sequence[ReplicaRoute]) -> EngineStats | None:
    """The replicas' figures summed (requests running and waiting, tokens, the TTFT
    histogram), or None when none answered."""
    found: list[EngineStats] = []
    with httpx.Client(timeout=READ_TIMEOUT_S) as client:
        for route in routes:
            headers = {"Authorization": f"Bearer {route.token}"} if route.token else {}
            try:
                answer = client.get(f"{route.base_url}/metrics", headers=headers)
            except httpx.HTTPError:
                continue
            if answer.status_code == 200:
                found.append(parse_metrics(answer.text))
    return _sum(found) if found else None
