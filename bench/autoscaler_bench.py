"""The autoscaler's reaction time: from the start of a load to the scale-up it records.

    .venv/bin/python bench/autoscaler_bench.py [--runs 3] [--intervals 30,2]

For each polling interval, starts ``modelyard serve`` with the simulated engine (200 ms to a
first token, 20 tokens/s) and that ``MODELYARD_AUTOSCALE_INTERVAL_S``; each run provisions a
deployment, sets ``min_replicas=1, max_replicas=4`` through the deployments service over the
server's own store, then sends twelve clients' requests through the gateway and times the
moment the load began against the ``ScaleRequested`` event's timestamp. The baseline in the
same run is the interval itself: a poll reacts to the first sample showing the queue, so the
reaction is at most about one interval; the ratio says how much of it was spent.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from datetime import UTC, datetime

import httpx
from serving import provision_running, served

from modelyard.adapters.eventstore.env import store_env
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.service import DeploymentsService, SetAutoscaling
from modelyard.domain.shared import ids
from modelyard.domain.shared.store import Store
from modelyard.settings import load_settings

POLICY = ev.Autoscaling(min_replicas=1, max_replicas=4)
CLIENTS = 12
BODY = {"model": "m", "messages": [{"role": "user", "content": " ".join(f"w{i}" for i in range(20))}]}


def load(url: str, key: str, stop: threading.Event) -> None:
    """One client: requests back to back until ``stop``."""
    with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {key}"}) as client:
        while not stop.is_set():
            client.post(url, json=BODY)


def one_run(base: str, key: str, store: Store) -> float:
    """Seconds from the load's start to the ScaleRequested the autoscaler records."""
    instance = provision_running(base, key)
    instance_id, inference_key = str(instance["id"]), str(instance["api_key"])
    dep = ids.parse_deployment_id(instance_id)
    DeploymentsService(store).set_autoscaling(
        SetAutoscaling(deployment_id=dep, policy=POLICY, at=datetime.now(UTC))
    )
    stop = threading.Event()
    url = f"{base}/v1/{instance_id}/v1/chat/completions"
    clients = [threading.Thread(target=load, args=(url, inference_key, stop)) for _ in range(CLIENTS)]
    began = datetime.now(UTC)
    for client in clients:
        client.start()
    try:
        while True:
            scaled = [e for e in store.events.get(dep) if isinstance(e, ev.ScaleRequested)]
            if scaled:
                return (scaled[0].timestamp - began).total_seconds()
            time.sleep(0.1)
    finally:
        stop.set()
        for client in clients:
            client.join()
        httpx.delete(f"{base}/v1/instances/{instance_id}", headers={"Authorization": f"Bearer {key}"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--intervals", default="30,2")
    args = parser.parse_args()
    for interval in (float(i) for i in args.intervals.split(",")):
        env = {
            "MODELYARD_ENGINE": "simulated",
            "MODELYARD_SIMULATED_TTFT_MS": "200",
            "MODELYARD_SIMULATED_TOKENS_PER_S": "20",
            "MODELYARD_AUTOSCALE_INTERVAL_S": str(interval),
        }
        with served(**env) as (base, key, server_env):
            store = Store(env=store_env(load_settings(server_env)))
            try:
                reactions = []
                for run in range(1, args.runs + 1):
                    reactions.append(one_run(base, key, store))
                    took = reactions[-1]
                    print(f"interval {interval:g} s, run {run}: load start to ScaleRequested {took:.2f} s")
            finally:
                store.close()
        median = statistics.median(reactions)
        print(
            f"interval {interval:g} s: median reaction {median:.2f} s over {args.runs} runs,"
            f" {median / interval:.2f} of the interval (baseline)"
        )


if __name__ == "__main__":
    main()
