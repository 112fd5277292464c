"""The gateway routes only to a live replica that knows its token.

A deployment's view holds three replicas: one whose process is gone (nothing listens on
its port), one whose port is held by another replica (which refuses the token), and one
genuine. Every call reaches the genuine one; with it gone too, the call is
``INSTANCE_NOT_RUNNING``, never a relayed refusal or a crash.

A deployment called recently stays cached, re-read in the background as the views change;
one not called for ``KEEP_WARM_S`` is left to expire. A call that finds no replica left
asks the views again before it answers: a deployment destroyed since it was cached is
``INSTANCE_NOT_FOUND``.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from modelyard.adapters.engines.base import ReplicaHandle, ReplicaSpec
from modelyard.adapters.eventlog.sources import NotificationLogSource
from modelyard.adapters.placement.local import LocalPlacement
from modelyard.adapters.views.db import SqliteViews
from modelyard.api.gateway import forwarder as forwarding
from modelyard.api.gateway.forwarder import REPLICAS_TTL_S, Forwarder
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.deployments.service import OnDeployment, Provision, ReplicaCommand, RequestDeployment
from modelyard.domain.services import Services
from modelyard.domain.shared.errors import InstanceNotFound, InstanceNotRunning
from modelyard.domain.shared.store import Store
from modelyard.projections.deployments import queries
from modelyard.projections.registry import all_projections
from modelyard.workers.projection_runner import ProjectionRunner

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
BODY = {"model": "sim", "messages": [{"role": "user", "content": "reached"}]}


@pytest.fixture
def store(sqlite_store: Store) -> Store:
    return sqlite_store


@pytest.fixture
def placement(tmp_path: Path) -> Iterator[LocalPlacement]:
    held = LocalPlacement(tmp_path / "replicas", gpu=False)
    yield held
    held.stop_all()


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _deployment(store: Store, routes: list[tuple[str, str]]) -> UUID:
    """A running deployment whose recorded replicas are ``routes`` (base URL, token)."""
    services = Services.over(store)
    account = services.accounts.open_account(OpenAccount(name="routes", at=T0)).id
    services.accounts.add_credits(AddCredits(account_id=account, amount=50_000_000, at=T0))
    request = RequestDeployment(account_id=account, model="smollm2-135m", capacity=2, at=T0)
    provision = Provision(deployment=request, key_hash=uuid4().hex, key_display="k")
    dep = services.deployments.provision(provision).id
    for n, (url, token) in enumerate(routes):
        services.deployments.start_replica(
            ReplicaCommand(deployment_id=dep, replica=f"{dep.hex}-r{n}", base_url=url, token=token, at=T0)
        )
    services.deployments.activate(OnDeployment(deployment_id=dep, at=T0))
    return dep


def _views(store: Store, tmp_path: Path) -> SqliteViews:
    views = SqliteViews(tmp_path / "views.sqlite3")
    views.ensure([statement for p in all_projections() for statement in p.schema])
    _project(store, views)
    return views


def _project(store: Store, views: SqliteViews) -> None:
    ProjectionRunner(views, NotificationLogSource(store.recorder), all_projections()).run_until_idle()


async def _calls(forwarder: Forwarder, dep: UUID, n: int) -> list[tuple[int, str]]:
    answers = []
    try:
        for _ in range(n):
            status, body = await forwarder.complete(dep, BODY)
            answers.append((status, body["choices"][0]["message"]["content"]))
            lines = [line async for line in forwarder.stream(dep, {**BODY, "stream": True})]
            assert lines[-1] == b"data: [DONE]"
    finally:
        await forwarder.close()
    return answers


def _start_two(placement: LocalPlacement) -> tuple[ReplicaHandle, ReplicaHandle]:
    spec = ReplicaSpec(model="sim", engine="simulated")
    return placement.start(spec, "other", deployment="x"), placement.start(spec, "genuine", deployment="x")


def test_calls_reach_the_live_replica_past_a_dead_port_and_a_stranger(
    store: Store, placement: LocalPlacement, tmp_path: Path
) -> None:
    other, genuine = _start_two(placement)
    dead = f"http://127.0.0.1:{_unused_port()}"
    dep = _deployment(
        store, [(dead, "t-dead"), (other.base_url, "not-its-token"), (genuine.base_url, genuine.token)]
    )
    views = _views(store, tmp_path)
    answers = asyncio.run(_calls(Forwarder(views), dep, 6))
    assert answers == [(200, "reached")] * 6


def test_with_no_live_replica_left_the_call_is_instance_not_running(
    store: Store, placement: LocalPlacement, tmp_path: Path
) -> None:
    other, _ = _start_two(placement)
    dead = f"http://127.0.0.1:{_unused_port()}"
    dep = _deployment(store, [(dead, "t-dead"), (other.base_url, "not-its-token")])
    views = _views(store, tmp_path)
    with pytest.raises(InstanceNotRunning) as refused:
        asyncio.run(_calls(Forwarder(views), dep, 1))
    assert "127.0.0.1" not in refused.value.message
    assert "t-dead" not in refused.value.message


@asynccontextmanager
async def _warming(views: SqliteViews) -> AsyncIterator[Forwarder]:
    """A forwarder whose ``keep_warm`` runs for the block."""
    forwarder = Forwarder(views)
    warming = asyncio.create_task(forwarder.keep_warm())
    try:
        yield forwarder
    finally:
        forwarder.stop()
        await asyncio.wait_for(warming, timeout=5)
        await forwarder.close()


async def _warm_then_torn_down(store: Store, views: SqliteViews, dep: UUID) -> tuple[bool, str, str]:
    """(cached after two TTLs without a call, state seen before, state seen after the teardown)."""
    async with _warming(views) as forwarder:
        await forwarder.complete(dep, BODY)
        await asyncio.sleep(2 * REPLICAS_TTL_S)
        warm = forwarder.cached(dep)
        before = forwarder.deployment(dep)
        Services.over(store).deployments.request_teardown(OnDeployment(deployment_id=dep, at=T0))
        _project(store, views)
        deadline = time.monotonic() + 3 * REPLICAS_TTL_S
        after = before
        while time.monotonic() < deadline and after == before:
            await asyncio.sleep(0.05)
            # Only what the background re-read left: a stale entry would be read here instead.
            assert forwarder.cached(dep)
            after = forwarder.deployment(dep)
    assert before is not None
    assert after is not None
    return warm, before.state, after.state


def test_a_called_deployment_stays_cached_and_follows_the_views(
    store: Store, placement: LocalPlacement, tmp_path: Path
) -> None:
    _, genuine = _start_two(placement)
    dep = _deployment(store, [(genuine.base_url, genuine.token)])
    views = _views(store, tmp_path)
    warm, before, after = asyncio.run(_warm_then_torn_down(store, views, dep))
    assert warm
    assert (before, after) == ("running", "teardown")


async def _left_to_expire(views: SqliteViews, dep: UUID) -> bool:
    async with _warming(views) as forwarder:
        await forwarder.complete(dep, BODY)
        await asyncio.sleep(forwarding.KEEP_WARM_S + 2 * REPLICAS_TTL_S)
        return forwarder.cached(dep)


def test_a_deployment_not_called_for_a_while_is_left_to_expire(
    store: Store, placement: LocalPlacement, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forwarding, "KEEP_WARM_S", 0.2)
    _, genuine = _start_two(placement)
    dep = _deployment(store, [(genuine.base_url, genuine.token)])
    assert not asyncio.run(_left_to_expire(_views(store, tmp_path), dep))


async def _call_after_destroyed(
    store: Store, views: SqliteViews, dep: UUID, stop_replica: Callable[[], None]
) -> None:
    forwarder = Forwarder(views)
    try:
        await forwarder.complete(dep, BODY)  # its state and routes are cached now
        deployments = Services.over(store).deployments
        deployments.request_teardown(OnDeployment(deployment_id=dep, at=T0))
        stop_replica()
        deployments.mark_destroyed(OnDeployment(deployment_id=dep, at=T0))
        _project(store, views)
        await forwarder.complete(dep, BODY)
    finally:
        await forwarder.close()


def test_a_call_on_a_deployment_destroyed_since_it_was_cached_is_not_found(
    store: Store, placement: LocalPlacement, tmp_path: Path
) -> None:
    _, genuine = _start_two(placement)
    dep = _deployment(store, [(genuine.base_url, genuine.token)])
    views = _views(store, tmp_path)
    with pytest.raises(InstanceNotFound):
        asyncio.run(_call_after_destroyed(store, views, dep, lambda: placement.stop(genuine)))


@pytest.mark.parametrize("batch", [1, 500])
def test_the_states_and_routes_of_many_deployments_are_read_together(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    """What keep-warm reads each pass: every called deployment's in two queries (a batch)."""
    monkeypatch.setattr(queries, "BATCH", batch)
    two = _deployment(store, [("http://127.0.0.1:1", "t-a"), ("http://127.0.0.1:2", "t-b")])
    one = _deployment(store, [("http://127.0.0.1:3", "t-c")])
    unknown = uuid4()
    with _views(store, tmp_path).read() as tx:
        states = queries.deployment_states(tx, [two, unknown, one])
        routes = queries.serving_replicas_of(tx, [two, unknown, one])
    assert {dep: state.state for dep, state in states.items()} == {two: "running", one: "running"}
    assert {dep: [(r.base_url, r.token) for r in found] for dep, found in routes.items()} == {
        two: [("http://127.0.0.1:1", "t-a"), ("http://127.0.0.1:2", "t-b")],
        unknown: [],
        one: [("http://127.0.0.1:3", "t-c")],
    }
