"""Least-loaded forwarding of OpenAI-shaped requests to a deployment's replicas."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx

from modelyard.adapters.views.db import ViewDatabase
from modelyard.domain.shared.errors import InstanceNotRunning

# Replica addresses change only on start, loss and scale: re-reading them each second is plenty.
REPLICAS_TTL_S = 1.0
# Generation on a CPU replica can take minutes for long answers.
UPSTREAM_TIMEOUT = httpx.Timeout(600.0, connect=5.0)


class Forwarder:
    """Picks the replica with the fewest requests in flight from this process, and calls it."""

    def __init__(self, views: ViewDatabase) -> None:
        self._views = views
        self._client = httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT)
        self._cache: dict[str, tuple[float, list[str]]] = {}
        self._in_flight: dict[str, int] = {}
        self._turn = 0
        self._deployments: dict[str, tuple[float, tuple[str, str] | None]] = {}
        self._used: set[str] = set()

    def deployment(self, dep_id: str) -> tuple[str, str] | None:
        """(state, model) of a deployment, re-read at most every ``REPLICAS_TTL_S``."""
        cached = self._deployments.get(dep_id)
        if cached and time.monotonic() - cached[0] < REPLICAS_TTL_S:
            return cached[1]
        with self._views.read() as tx:
            rows = tx.execute("SELECT state, model FROM deployments WHERE id = %s", [dep_id])
        found = (str(rows[0][0]), str(rows[0][1])) if rows else None
        self._deployments[dep_id] = (time.monotonic(), found)
        return found

    def cached(self, dep_id: str) -> bool:
        """Whether ``deployment`` would answer without the database."""
        entry = self._deployments.get(dep_id)
        return entry is not None and time.monotonic() - entry[0] < REPLICAS_TTL_S

    def used(self, dep_id: str) -> bool:
        """Whether this process already served a request of the deployment."""
        return dep_id in self._used

    def first_use(self, dep_id: str) -> bool:
        """Mark the deployment used; True the first time in this process."""
        if dep_id in self._used:
            return False
        self._used.add(dep_id)
        return True

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    def _read(self, dep_id: str) -> list[str]:
        with self._views.read() as tx:
            rows = tx.execute(
                "SELECT base_url FROM replicas WHERE deployment_id = %s ORDER BY replica", [dep_id]
            )
        return [str(r[0]) for r in rows]

    async def _replicas(self, dep_id: str) -> list[str]:
        cached = self._cache.get(dep_id)
        if cached and time.monotonic() - cached[0] < REPLICAS_TTL_S:
            return cached[1]
        urls = await anyio.to_thread.run_sync(self._read, dep_id)
        self._cache[dep_id] = (time.monotonic(), urls)
        return urls

    async def pick(self, dep_id: str) -> str:
        """The least-loaded replica (ties go round-robin)."""
        urls = await self._replicas(dep_id)
        if not urls:
            raise InstanceNotRunning(f"{dep_id} has no replica serving right now; poll its status.")
        self._turn += 1
        rotated = urls[self._turn % len(urls) :] + urls[: self._turn % len(urls)]
        return min(rotated, key=lambda url: self._in_flight.get(url, 0))

    async def complete(self, dep_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One whole chat completion: (status, JSON body) as the replica answered."""
        url = await self.pick(dep_id)
        self._in_flight[url] = self._in_flight.get(url, 0) + 1
        try:
            response = await self._client.post(f"{url}/v1/chat/completions", json=body)
        except httpx.TransportError as exc:
            self._cache.pop(dep_id, None)
            raise InstanceNotRunning(f"The replica of {dep_id} did not answer ({exc}); retry.") from exc
        finally:
            self._in_flight[url] -= 1
        return response.status_code, response.json()

    async def stream(self, dep_id: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """The replica's server-sent events, line by line; closing this closes the upstream."""
        url = await self.pick(dep_id)
        self._in_flight[url] = self._in_flight.get(url, 0) + 1
        try:
            async with self._client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if line:
                        yield line.encode()
        finally:
            self._in_flight[url] -= 1
