"""Cold start from zero replicas to the first token on ``smollm2-135m``, beside a warm request.

    .venv/bin/python bench/coldstart_bench.py [--runs 5]

Starts ``modelyard serve`` (llama.cpp, the embedded default) with the autoscaler polling
every half second, provisions ``smollm2-135m``, and sets a scale-to-zero policy with a one
second idle timeout through the deployments service over the server's own store. Each run
waits until the deployment is scaled to zero, then streams one chat request through the
gateway and times the first content token (cold: the request wakes it, is held while a
replica starts and loads the model, then answered); a second request right after, on the
replica now warm, is the baseline. Prints each run, the medians and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
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

BODY = {
    "model": "m",
    "messages": [{"role": "user", "content": "Say hello."}],
    "max_tokens": 8,
    "stream": True,
}
POLICY = ev.Autoscaling(min_replicas=1, max_replicas=1, scale_to_zero=True, idle_timeout_seconds=1)


def first_token_s(url: str, key: str) -> float:
    """Seconds from sending a streamed chat request to its first content chunk."""
    began = time.perf_counter()
    with httpx.stream(
        "POST", url, json=BODY, headers={"Authorization": f"Bearer {key}"}, timeout=300
    ) as answer:
        answer.raise_for_status()
        for line in answer.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0]["delta"]
            if delta.get("content"):
                return time.perf_counter() - began
    raise RuntimeError("the stream ended without a token")


def status(base: str, key: str, instance_id: str) -> str:
    shown = httpx.get(f"{base}/v1/instances/{instance_id}", headers={"Authorization": f"Bearer {key}"})
    return str(shown.json()["data"]["instance"]["status"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    with served(MODELYARD_AUTOSCALE_INTERVAL_S="0.5") as (base, key, env):
        instance = provision_running(base, key)
        instance_id, inference_key = str(instance["id"]), str(instance["api_key"])
        store = Store(env=store_env(load_settings(env)))
        try:
            DeploymentsService(store).set_autoscaling(
                SetAutoscaling(
                    deployment_id=ids.parse_deployment_id(instance_id), policy=POLICY, at=datetime.now(UTC)
                )
            )
        finally:
            store.close()
        url = f"{base}/v1/{instance_id}/v1/chat/completions"
        cold, warm = [], []
        for run in range(1, runs + 1):
            while status(base, key, instance_id) != "scaled_to_zero":
                time.sleep(0.1)
            cold.append(first_token_s(url, inference_key))
            warm.append(first_token_s(url, inference_key))
            print(f"run {run}: cold start to first token {cold[-1]:.3f} s, warm {warm[-1]:.3f} s")
        cold_median, warm_median = statistics.median(cold), statistics.median(warm)
        print(f"median cold start to first token: {cold_median:.3f} s over {runs} runs")
        print(f"median warm first token (baseline): {warm_median:.3f} s")
        print(f"cold / warm: {cold_median / warm_median:.1f}x")


if __name__ == "__main__":
    main()
