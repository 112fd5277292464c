"""Replica start time under ``ray`` against ``local``, and the gateway's added latency to a
Ray-placed replica, in one run.

    .venv/bin/python bench/ray_bench.py

Starts a Ray head on this machine (two CPUs, no dashboard), then:

1. starts and stops replicas alternately through ``LocalPlacement`` and ``RayPlacement``
   (the simulated engine, then llama.cpp on ``smollm2-135m``) and prints the median time
   from ``start`` to a replica answering ``/health``, and the ratio ray/local;
2. runs ``modelyard serve`` with the simulated engine at zero delay under each placement,
   provisions one instance, sends the same chat request to the replica directly and
   through the gateway at a fixed rate, and prints p50/p99 of each and the difference.

Client, gateway, Ray and replicas share this machine's cores: the figures include their
contention, and are comparable within the run, not across machines.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gateway_bench import _load, _p
from serving import provision_running, served

from modelyard.adapters.engines.base import ReplicaSpec
from modelyard.adapters.engines.models import gguf_paths, replica_spec
from modelyard.adapters.eventstore.env import store_env
from modelyard.adapters.placement.base import Placement
from modelyard.adapters.placement.local import LocalPlacement
from modelyard.adapters.placement.ray import RayPlacement
from modelyard.adapters.services.ray import LocalRay
from modelyard.domain.deployments import events as ev
from modelyard.domain.shared import ids
from modelyard.domain.shared.store import Store
from modelyard.settings import load_settings

ROUNDS = {"simulated": 5, "llamacpp": 3}
CLIENTS, RATE, SECONDS = 20, 100.0, 5.0


def _start_times(placements: dict[str, Placement], spec: ReplicaSpec, rounds: int) -> dict[str, list[float]]:
    """Seconds from ``start`` to a healthy replica, per placement, alternating so that the
    machine's load falls on both alike; each replica is stopped before the next starts."""
    times: dict[str, list[float]] = {name: [] for name in placements}
    for n in range(rounds):
        for name, placement in placements.items():
            began = time.perf_counter()
            handle = placement.start(
                spec, f"bench-{name}-{spec.engine}-{n}-{time.time_ns()}", deployment="bench"
            )
            times[name].append(time.perf_counter() - began)
            placement.stop(handle)
    return times


def _gateway(env_extra: dict[str, str]) -> tuple[list[float], list[float]]:
    """Latencies (ms) straight to the replica and through the gateway, at the same rate."""
    with served(MODELYARD_ENGINE="simulated", MODELYARD_RATE_LIMIT_RPM="100000000", **env_extra) as (
        base,
        key,
        env,
    ):
        got = provision_running(base, key)
        store = Store(env=store_env(load_settings(env)))
        try:
            started = next(
                e
                for e in store.events.get(ids.parse_deployment_id(str(got["id"])))
                if isinstance(e, ev.ReplicaStarted)
            )
        finally:
            store.close()
        direct_url = f"{started.base_url}/v1/chat/completions"
        own = {"Authorization": f"Bearer {started.token}"}
        via = f"{got['openai_base_url']}/chat/completions"
        infer = {"Authorization": f"Bearer {got['api_key']}"}
        asyncio.run(_load(direct_url, own, clients=CLIENTS, seconds=2, rate=RATE))
        asyncio.run(_load(via, infer, clients=CLIENTS, seconds=2, rate=RATE))
        direct, _ = asyncio.run(_load(direct_url, own, clients=CLIENTS, seconds=SECONDS, rate=RATE))
        gated, _ = asyncio.run(_load(via, infer, clients=CLIENTS, seconds=SECONDS, rate=RATE))
        return direct, gated


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="myray-"))
    head = LocalRay(root / "head", port=_free_port(), num_cpus=2, temp_dir=root / "tmp")
    try:
        began = time.perf_counter()
        head.up()
        print(f"Ray head up in {time.perf_counter() - began:.1f} s")
        placements: dict[str, Placement] = {
            "local": LocalPlacement(root / "local", gpu=False),
            "ray": RayPlacement(head.address, root / "ray"),
        }
        gguf = replica_spec("smollm2-135m", engine="auto", gguf=gguf_paths(""), preset="balanced")
        specs = {"simulated": ReplicaSpec(model="sim", engine="simulated"), "llamacpp": gguf}
        print("replica start to healthy, median of alternating rounds:")
        for engine, spec in specs.items():
            times = _start_times(placements, spec, ROUNDS[engine])
            local, ray = (statistics.median(times[name]) for name in ("local", "ray"))
            print(
                f"  {engine:<9} local {local:6.2f} s  ray {ray:6.2f} s  ray/local {ray / local:5.2f}x"
                f"  (rounds: {ROUNDS[engine]}; ray each: {', '.join(f'{t:.2f}' for t in times['ray'])})"
            )
        for placement in placements.values():
            placement.stop_all()
        print(f"gateway's added latency, {CLIENTS} in flight at {RATE:.0f} req/s for {SECONDS:.0f} s:")
        runs: dict[str, Callable[[], tuple[list[float], list[float]]]] = {
            "local": lambda: _gateway({}),
            "ray": lambda: _gateway({"MODELYARD_PLACEMENT": "ray", "MODELYARD_RAY_ADDRESS": head.address}),
        }
        for name, run in runs.items():
            direct, gated = run()
            added = (_p(gated, 50) - _p(direct, 50), _p(gated, 99) - _p(direct, 99))
            print(
                f"  {name:<5} direct p50 {_p(direct, 50):6.1f} p99 {_p(direct, 99):6.1f} ms"
                f" | gateway p50 {_p(gated, 50):6.1f} p99 {_p(gated, 99):6.1f} ms"
                f" | added p50 {added[0]:6.1f} p99 {added[1]:6.1f} ms"
            )
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        head.down()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
