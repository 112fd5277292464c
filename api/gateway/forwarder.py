"""Least-loaded forwarding of OpenAI-shaped requests to a deployment's replicas.

The upstream client is aiohttp's: httpx's connection pool scans every pooled connection
on each request (checking each socket for expiry), which under a few dozen concurrent
requests cost two thirds of the gateway's CPU; aiohttp's connector hands out an idle
connection without the scan.

A deployment's state and replica routes are cached for ``REPLICAS_TTL_S``; while it is
called (within ``KEEP_WARM_S``), ``keep_warm`` re-reads them in the background before they
expire, so a call finds them cached instead of reading the views on its way to the first
token. Nothing is served from a cache older than ``REPLICAS_TTL_S``.

Routing goes only to replicas the views hold as started, and each call carries the token
its replica was started with. A replica that does not answer (its process is gone) or
refuses the token (the port now belongs to another process) is dropped from the cached
list and the call goes to another replica of the deployment, if any; with none left the
call is ``INSTANCE_NOT_RUNNING``, or ``INSTANCE_NOT_FOUND`` if the views, read then, hold
the deployment destroyed. A replica whose queue is full (503) passes the call to another
replica too; when every one is full the call is ``ENGINE_BUSY`` (503) with the shortest
``Retry-After`` they gave. The token is never in a message or a log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NoReturn
from uuid import UUID

import aiohttp
import anyio
import msgspec

from modelyard.adapters.engines.upstream import event_lines
from modelyard.adapters.placement.balancer import least_loaded
from modelyard.adapters.views.db import ViewDatabase
from modelyard.api.errors import EngineBusy
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import InstanceNotFound, InstanceNotRunning
from modelyard.projections.deployments.queries import (
    DeploymentState,
    ReplicaRoute,
    deployment_state,
    deployment_states,
    serving_replicas,
    serving_replicas_of,
)

# Replica addresses change only on start, loss and scale: re-reading them each second is plenty.
REPLICAS_TTL_S = 1.0
# A deployment called within this long is kept cached: re-read every half TTL, off the calls.
KEEP_WARM_S = 60.0
# Generation on a CPU replica can take minutes for long answers.
UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=600.0, connect=5.0)
# Upstream connections open at once, over every replica: far above what replicas admit,
# low enough to stay inside the process's file descriptors.
UPSTREAM_CONNECTIONS = 1024
# What a replica of ours answers a call without its token: whoever holds that port is not it.
NOT_THIS_REPLICA = (401, 403)
# What a replica answers when its queue is full, with a Retry-After.
BUSY = 503
log = logging.getLogger(__name__)


class UpstreamRefused(Exception):
    """A replica answered a streamed request with an error instead of events."""

    def __init__(self, status: int, answer: dict[str, Any]) -> None:
        super().__init__(status)
        self.status, self.answer = status, answer


class Forwarder:
    """Picks the replica with the fewest requests in flight from this process, and calls it."""

    def __init__(self, views: ViewDatabase) -> None:
        self._views = views
        self._session: aiohttp.ClientSession | None = None
        self._cache: dict[UUID, tuple[float, list[ReplicaRoute]]] = {}
        self._in_flight: dict[str, int] = {}
        self._turn = 0
        self._deployments: dict[UUID, tuple[float, DeploymentState | None]] = {}
        self._used: set[UUID] = set()
        # Deployment -> when it was last called (monotonic): what ``keep_warm`` re-reads.
        self._called: dict[UUID, float] = {}
        self._wake: anyio.Event | None = None
        self._stopping = False

    def deployment(self, dep_id: UUID) -> DeploymentState | None:
        """State and model of a deployment, re-read at most every ``REPLICAS_TTL_S``."""
        cached = self._deployments.get(dep_id)
        if cached and time.monotonic() - cached[0] < REPLICAS_TTL_S:
            return cached[1]
        with self._views.read() as tx:
            found = deployment_state(tx, dep_id)
        self._deployments[dep_id] = (time.monotonic(), found)
        return found

    def cached(self, dep_id: UUID) -> bool:
        """Whether ``deployment`` would answer without the database."""
        entry = self._deployments.get(dep_id)
        return entry is not None and time.monotonic() - entry[0] < REPLICAS_TTL_S

    def forget(self, dep_id: UUID) -> None:
        """Drop what is cached of a deployment: it just started serving (a cold start)."""
        self._cache.pop(dep_id, None)
        self._deployments.pop(dep_id, None)

    def first_use(self, dep_id: UUID) -> bool:
        """Mark the deployment used; True the first time in this process."""
        if dep_id in self._used:
            return False
        self._used.add(dep_id)
        return True

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use, inside the event loop that serves requests, as aiohttp wants.
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=UPSTREAM_CONNECTIONS, limit_per_host=0)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=UPSTREAM_TIMEOUT, json_serialize=_json_text
            )
        return self._session

    def _read(self, dep_id: UUID) -> list[ReplicaRoute]:
        with self._views.read() as tx:
            return serving_replicas(tx, dep_id)

    async def keep_warm(self) -> None:
        """Until ``stop``: every half ``REPLICAS_TTL_S``, re-read the state and routes of the
        deployments called in the last ``KEEP_WARM_S`` (two queries for them all, not two a
        deployment); with none, sleep until one is."""
        while not self._stopping:
            self._wake = wake = anyio.Event()
            if not self._recent():
                await wake.wait()  # a first call, or stop
                continue
            with anyio.move_on_after(REPLICAS_TTL_S / 2):
                await wake.wait()  # only stop sets it now
            if self._stopping:
                return
            try:
                await self._refresh(self._recent())
            except Exception:  # the next call reads what it needs itself; try again next time
                log.exception("re-reading the routes of called deployments failed")

    def stop(self) -> None:
        """Make ``keep_warm`` return."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    def _recent(self) -> list[UUID]:
        """The deployments called within ``KEEP_WARM_S``; the others are forgotten."""
        since = time.monotonic() - KEEP_WARM_S
        for dep_id in [d for d, at in self._called.items() if at < since]:
            del self._called[dep_id]
        return list(self._called)

    async def _refresh(self, dep_ids: list[UUID]) -> None:
        # Stamped with when the read began: nothing is taken as fresher than it is.
        began = time.monotonic()
        read = await anyio.to_thread.run_sync(self._read_all, dep_ids)
        for dep_id, (state, routes) in read.items():
            self._deployments[dep_id] = (began, state)
            self._cache[dep_id] = (began, routes)

    def _read_all(self, dep_ids: list[UUID]) -> dict[UUID, tuple[DeploymentState | None, list[ReplicaRoute]]]:
        with self._views.read() as tx:
            states, routes = deployment_states(tx, dep_ids), serving_replicas_of(tx, dep_ids)
        return {d: (states.get(d), routes[d]) for d in dep_ids}

    async def _replicas(self, dep_id: UUID) -> list[ReplicaRoute]:
        if not self._called and self._wake is not None:
            self._wake.set()  # the first deployment called since ``keep_warm`` went idle
        self._called[dep_id] = time.monotonic()
        cached = self._cache.get(dep_id)
        if cached and time.monotonic() - cached[0] < REPLICAS_TTL_S:
            return cached[1]
        routes = await anyio.to_thread.run_sync(self._read, dep_id)
        self._cache[dep_id] = (time.monotonic(), routes)
        return routes

    async def _gone(self, dep_id: UUID) -> NoReturn:
        """No replica left to try: INSTANCE_NOT_FOUND if the views, read now, hold the
        deployment destroyed (its routes were cached before), else INSTANCE_NOT_RUNNING."""
        self._deployments.pop(dep_id, None)
        found = await anyio.to_thread.run_sync(self.deployment, dep_id)
        if found is None or found.state == "destroyed":
            raise InstanceNotFound(f"No instance {ids.instance_ref(dep_id)} (or it was destroyed).")
        raise InstanceNotRunning(
            f"{ids.instance_ref(dep_id)} has no replica serving right now; poll its status and retry."
        )

    def _drop(self, dep_id: UUID, route: ReplicaRoute) -> None:
        """Stop routing to ``route`` until the views are read again (by then its loss is
        usually recorded; if not, one more call finds out and goes elsewhere)."""
        cached = self._cache.get(dep_id)
        if cached:
            self._cache[dep_id] = (cached[0], [r for r in cached[1] if r != route])

    async def _pick(self, dep_id: UUID, tried: set[ReplicaRoute]) -> ReplicaRoute | None:
        """The least-loaded replica not tried yet (ties go round-robin); None when none is left."""
        routes = [r for r in await self._replicas(dep_id) if r not in tried]
        if not routes:
            return None
        self._turn += 1
        return least_loaded(routes, self._turn, lambda r: self._in_flight.get(r.base_url, 0))

    async def _call(
        self, route: ReplicaRoute, body: dict[str, Any] | Relayed
    ) -> aiohttp.ClientResponse | None:
        """The replica's response to ``body``, or None when it is not there to answer."""
        headers = {"Authorization": f"Bearer {route.token}"} if route.token else {}
        try:
            if isinstance(body, Relayed):
                response = await self._client().post(
                    f"{route.base_url}{body.path}",
                    data=body.data,
                    headers=headers | {"Content-Type": body.content_type},
                )
            else:
                response = await self._client().post(
                    f"{route.base_url}/v1/chat/completions", json=body, headers=headers
                )
        except aiohttp.ClientConnectionError:
            return None
        if route.token and response.status in NOT_THIS_REPLICA:
            response.release()
            return None
        return response

    @asynccontextmanager
    async def _answering(
        self, dep_id: UUID, body: dict[str, Any] | Relayed
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The response of the first live replica to take ``body``, counted in flight for the block."""
        tried: set[ReplicaRoute] = set()
        busy: list[int] = []
        while True:
            route = await self._pick(dep_id, tried)
            if route is None:
                if busy:
                    raise EngineBusy(
                        f"Every replica of {ids.instance_ref(dep_id)} is busy; retry after {min(busy)} s.",
                        headers={"Retry-After": str(min(busy))},
                    )
                await self._gone(dep_id)
            url = route.base_url
            self._in_flight[url] = self._in_flight.get(url, 0) + 1
            try:
                response = await self._call(route, body)
                if response is None:
                    tried.add(route)
                    self._drop(dep_id, route)
                    continue
                if response.status == BUSY:
                    busy.append(_retry_after(response.headers.get("Retry-After")))
                    response.release()
                    tried.add(route)
                    continue
                try:
                    yield response
                finally:
                    response.release()
                return
            finally:
                self._in_flight[url] -= 1

    async def complete(self, dep_id: UUID, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One whole chat completion: (status, JSON body) as the replica answered."""
        async with self._answering(dep_id, body) as response:
            status, raw = response.status, await self._whole(dep_id, response)
        return status, _json_object(raw)

    async def relay(self, dep_id: UUID, body: Relayed) -> Answer:
        """One call to another route of a replica (embeddings, audio), answered whole."""
        async with self._answering(dep_id, body) as response:
            raw = await self._whole(dep_id, response)
            headers = {name.lower(): value for name, value in response.headers.items()}
            return Answer(status=response.status, body=raw, headers=headers)

    async def _whole(self, dep_id: UUID, response: aiohttp.ClientResponse) -> bytes:
        """The replica's whole body; a replica gone mid-reply is INSTANCE_NOT_RUNNING."""
        try:
            return await response.read()
        except aiohttp.ClientConnectionError as exc:
            self._cache.pop(dep_id, None)
            # The connection error is ours to read, not the client's.
            log.warning("a replica of %s stopped answering mid-reply: %r", ids.instance_ref(dep_id), exc)
            raise InstanceNotRunning(
                f"The replica of {ids.instance_ref(dep_id)} stopped answering mid-reply; retry."
            ) from exc

    async def stream(self, dep_id: UUID, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """The replica's server-sent events, line by line; closing this closes the upstream.
        A refusal instead of events is ``UpstreamRefused``, raised before any line."""
        async with self._answering(dep_id, body) as response:
            if response.status != 200:
                raise UpstreamRefused(response.status, _json_object(await response.read()))
            async for line in event_lines(response.content):
                yield line


class Relayed(msgspec.Struct, frozen=True, kw_only=True):
    """A body for a replica route other than chat: its path, bytes and content type."""

    path: str
    data: bytes
    content_type: str = "application/json"


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """A replica's whole answer to a ``Relayed`` call."""

    status: int
    body: bytes
    # Names in lower case.
    headers: dict[str, str]


def _retry_after(value: str | None) -> int:
    """A Retry-After in whole seconds (1 when absent or not a number of seconds)."""
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


def _json_text(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _json_object(raw: bytes) -> dict[str, Any]:
    """The replica's answer; a body that is not a JSON object becomes an error to relay."""
    try:
        decoded = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        decoded = None
    if isinstance(decoded, dict):
        return decoded
    log.warning("engine answered something other than a JSON object: %.200r", raw)
    return {"error": {"message": "The engine answered something other than JSON."}}
