"""Least-loaded forwarding of OpenAI-shaped requests to a deployment's replicas.

The upstream client is aiohttp's: httpx's connection pool scans every pooled connection
on each request (checking each socket for expiry), which under a few dozen concurrent
requests cost two thirds of the gateway's CPU; aiohttp's connector hands out an idle
connection without the scan.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import aiohttp
import anyio
import msgspec

from modelyard.adapters.placement.balancer import least_loaded
from modelyard.adapters.views.db import ViewDatabase
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import InstanceNotRunning
from modelyard.projections.deployments.queries import DeploymentState, deployment_state, serving_replicas

# Replica addresses change only on start, loss and scale: re-reading them each second is plenty.
REPLICAS_TTL_S = 1.0
# Generation on a CPU replica can take minutes for long answers.
UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=600.0, connect=5.0)
# Upstream connections open at once, over every replica: far above what replicas admit,
# low enough to stay inside the process's file descriptors.
UPSTREAM_CONNECTIONS = 1024
log = logging.getLogger(__name__)


class Forwarder:
    """Picks the replica with the fewest requests in flight from this process, and calls it."""

    def __init__(self, views: ViewDatabase) -> None:
        self._views = views
        self._session: aiohttp.ClientSession | None = None
        self._cache: dict[UUID, tuple[float, list[str]]] = {}
        self._in_flight: dict[str, int] = {}
        self._turn = 0
        self._deployments: dict[UUID, tuple[float, DeploymentState | None]] = {}
        self._used: set[UUID] = set()

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

    def used(self, dep_id: UUID) -> bool:
        """Whether this process already served a request of the deployment."""
        return dep_id in self._used

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

    def _read(self, dep_id: UUID) -> list[str]:
        with self._views.read() as tx:
            return serving_replicas(tx, dep_id)

    async def _replicas(self, dep_id: UUID) -> list[str]:
        cached = self._cache.get(dep_id)
        if cached and time.monotonic() - cached[0] < REPLICAS_TTL_S:
            return cached[1]
        urls = await anyio.to_thread.run_sync(self._read, dep_id)
        self._cache[dep_id] = (time.monotonic(), urls)
        return urls

    @asynccontextmanager
    async def _leased(self, dep_id: UUID) -> AsyncIterator[str]:
        """The least-loaded replica (ties go round-robin), counted in flight for the block."""
        urls = await self._replicas(dep_id)
        if not urls:
            raise InstanceNotRunning(
                f"{ids.instance_ref(dep_id)} has no replica serving right now; poll its status."
            )
        self._turn += 1
        url = least_loaded(urls, self._turn, lambda u: self._in_flight.get(u, 0))
        self._in_flight[url] = self._in_flight.get(url, 0) + 1
        try:
            yield url
        finally:
            self._in_flight[url] -= 1

    async def complete(self, dep_id: UUID, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One whole chat completion: (status, JSON body) as the replica answered."""
        async with self._leased(dep_id) as url:
            try:
                async with self._client().post(f"{url}/v1/chat/completions", json=body) as response:
                    status, raw = response.status, await response.read()
            except aiohttp.ClientConnectionError as exc:
                self._cache.pop(dep_id, None)
                # The replica's address and the connection error are ours to read, not the client's.
                log.warning("replica %s of %s did not answer: %r", url, ids.instance_ref(dep_id), exc)
                raise InstanceNotRunning(
                    f"A replica of {ids.instance_ref(dep_id)} did not answer; retry."
                ) from exc
        return status, _json_object(raw)

    async def stream(self, dep_id: UUID, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """The replica's server-sent events, line by line; closing this closes the upstream."""
        async with (
            self._leased(dep_id) as url,
            self._client().post(f"{url}/v1/chat/completions", json=body) as response,
        ):
            async for line in response.content:
                if stripped := line.strip():
                    yield stripped


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
