"""Webhook fan-out through one dispatcher (embedded default) to a fast local receiver.

    .venv/bin/python bench/webhooks_bench.py [--deployments 50] [--events 2000] [--paced 300]

1. throughput: ``--events`` scale events of ``--deployments`` deployments (one subscription
   each) are appended first; then one dispatcher is started and timed until the receiver
   has every delivery (signed, recorded, position committed). Baseline in the same run:
   the same number of bare POSTs by an ``httpx.AsyncClient``, one in flight per deployment
   (the most the per-deployment order lets the dispatcher have), to the same receiver: the
   ceiling of this machine and receiver.
2. latency: with the dispatcher running, ``--paced`` events are appended one at a time
   (each append a store transaction); for each, the time from just before its append to
   its arrival at the receiver; p50 and p99.

The receiver is an aiohttp server in a process of its own that answers 200 at once.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import msgspec
from aiohttp import web

from modelyard.adapters.state import webhooks as stored
from modelyard.adapters.webhooks.signing import new_webhook_secret
from modelyard.cli.compose import Core, build_workers, opened_core, running
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.deployments.service import OnDeployment, ReplicaCommand, RequestDeployment, WithCapacity
from modelyard.domain.webhooks.service import SubscribeWebhook
from modelyard.settings import load_settings


def _receive(port_out: Any) -> None:
    """The receiver process: answers 200 at once, remembers each delivery's arrival by its id."""
    arrived: dict[str, float] = {}

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        arrived.setdefault(request.headers.get("webhook-id", ""), time.time())
        return web.Response(text="ok")

    async def count(_: web.Request) -> web.Response:
        return web.json_response({"count": len(arrived), "latest": max(arrived.values(), default=0.0)})

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/count", count)
        app.router.add_post("/{tail:.*}", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_out.put(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(serve())


class Receiver:
    """A receiver in a process of its own (so it takes no interpreter time from the dispatcher)."""

    def __init__(self) -> None:
        ports: multiprocessing.Queue[int] = multiprocessing.Queue()
        self.process = multiprocessing.Process(target=_receive, args=(ports,), daemon=True)
        self.process.start()
        port = ports.get(timeout=30)
        self.base = f"http://127.0.0.1:{port}"
        self.url = f"{self.base}/hooks"
        self._client = httpx.Client(base_url=self.base)

    def state(self) -> tuple[int, float]:
        answer = self._client.get("/count").json()
        return int(answer["count"]), float(answer["latest"])

    def count(self) -> int:
        return self.state()[0]

    def close(self) -> None:
        self._client.close()
        self.process.terminate()
        self.process.join(10)


@contextmanager
def serving() -> Iterator[Receiver]:
    receiver = Receiver()
    try:
        yield receiver
    finally:
        receiver.close()


def _now() -> datetime:
    return datetime.now(UTC)


def setup(core: Core, deployments: int, url: str) -> list[UUID]:
    services = core.services
    account = services.accounts.open_account(OpenAccount(name="bench", plan="enterprise", at=_now())).id
    services.accounts.add_credits(AddCredits(account_id=account, amount=1_000_000_000, at=_now()))
    made = []
    for _ in range(deployments):
        request = RequestDeployment(account_id=account, model="smollm2-135m", at=_now())
        deployment = services.deployments.request(request).id
        replica = ReplicaCommand(
            deployment_id=deployment, replica="r1", base_url="http://127.0.0.1:9", at=_now()
        )
        services.deployments.start_replica(replica)
        services.deployments.activate(OnDeployment(deployment_id=deployment, at=_now()))
        webhook, secret = uuid.uuid4(), new_webhook_secret()
        with core.state.transaction() as tx:
            stored.keep_secret(tx, webhook, secret, now=time.time())
        command = SubscribeWebhook(
            deployment_id=deployment, url=url, events=("deployment.scaled",), at=_now(), webhook_id=webhook
        )
        services.webhooks.subscribe(command)
        made.append(deployment)
    return made


def scale_event(core: Core, deployment: UUID, capacity: int) -> float:
    """Append one ``ScaledTo`` (its request first); returns the time just before the ScaledTo append."""
    services = core.services.deployments
    services.request_scale(WithCapacity(deployment_id=deployment, capacity=capacity, at=_now()))
    before = time.time()
    services.finish_scale(WithCapacity(deployment_id=deployment, capacity=capacity, at=_now()))
    return before


def wait_count(receiver: Receiver, count: int, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while receiver.count() < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {receiver.count()} of {count} delivered")
        time.sleep(0.001)
    return time.perf_counter()


async def raw_posts(url: str, bodies: list[bytes], concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    slots = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(limits=limits) as client:

        async def one(i: int, body: bytes) -> None:
            async with slots:
                answer = await client.post(url, content=body, headers={"webhook-id": f"raw_{i}"})
                answer.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deployments", type=int, default=50)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--paced", type=int, default=300)
    args = parser.parse_args()
    with serving() as receiver, tempfile.TemporaryDirectory() as tmp:
        env = {
            "MODELYARD_DATA_DIR": str(Path(tmp) / "data"),
            "MODELYARD_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        }
        settings = load_settings(env)
        with opened_core(settings) as core, running(build_workers(core, ["views"])):
            deployments = setup(core, args.deployments, receiver.url)
            for i in range(args.events):
                scale_event(
                    core, deployments[i % len(deployments)], 2 if (i // len(deployments)) % 2 == 0 else 1
                )
            with core.state.read() as tx:
                assert not stored.deliveries_of(tx, uuid.uuid4())
            time.sleep(1.0)  # the views have the subscriptions (the dispatcher also waits for them)
            start = time.perf_counter()
            with running(build_workers(core, ["webhooks"])):
                end = wait_count(receiver, args.events)
                rate = args.events / (end - start)
                # Latency: one event at a time, the dispatcher caught up.
                latencies = []
                for i in range(args.paced):
                    deployment = deployments[i % len(deployments)]
                    capacity = 2 if ((args.events + i) // len(deployments)) % 2 == 0 else 1
                    before = scale_event(core, deployment, capacity)
                    wanted = args.events + i + 1
                    wait_count(receiver, wanted)
                    latencies.append((receiver.state()[1] - before) * 1000)
            bodies = [
                msgspec.json.encode({"id": f"raw_{i}", "type": "deployment.scaled"})
                for i in range(args.events)
            ]
            # The dispatcher sends one delivery per deployment at a time: that is its concurrency here.
            raw_s = asyncio.run(
                raw_posts(receiver.url, bodies, min(args.deployments, settings.webhook_concurrency))
            )
            raw_rate = args.events / raw_s
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    shape = f"{args.events} events, {args.deployments} deployments"
    print(f"deliveries through one dispatcher: {rate:,.0f}/s ({shape})")
    print(f"bare POSTs, same receiver, one in flight per deployment (baseline): {raw_rate:,.0f}/s")
    print(f"ratio dispatcher/baseline: {rate / raw_rate:.2f}")
    print(f"append -> delivery latency over {args.paced} paced events: p50 {p50:.1f} ms, p99 {p99:.1f} ms")


if __name__ == "__main__":
    main()
