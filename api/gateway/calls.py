"""An inference call through the gateway: authenticate, route, relay, record usage.

``Gateway`` holds what every inference route uses (the key cache, the forwarder, the
usage writer, the state store's shown-once secrets) and is handed to the routes by
dependency injection. Lookups that are cached run on the event loop; the first of a key
or a deployment goes to a thread, so the loop never waits on the database.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec

from modelyard.adapters.concurrency.limiter import ConcurrencyLimiter
from modelyard.adapters.state import secrets
from modelyard.adapters.views.db import ViewDatabase
from modelyard.api.auth import KeyCache, Principal, bearer_secret, inference_principal
from modelyard.api.errors import InvalidApiKey, RateLimitExceeded
from modelyard.api.gateway.coldstart import COLD, ColdStarter
from modelyard.api.gateway.forwarder import Forwarder, UpstreamRefused
from modelyard.api.gateway.requests import NativeChat, upstream_error
from modelyard.api.gateway.usage import UsageWriter
from modelyard.api.metrics import ApiMetrics
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import InstanceNotFound, InstanceNotRunning
from modelyard.domain.usage.service import RecordUsage

SERVING = ("running", "scaling", "degraded")


class Call(msgspec.Struct, kw_only=True):
    """One inference call on its way through the gateway."""

    deployment_id: uuid.UUID
    model: str
    principal: Principal
    started: float
    # Scaled to zero (or waking) when opened: held until it serves (``ColdStarter``).
    cold: bool = False
    # The SLA's limit on the deployment's requests in flight, across API processes.
    concurrency_limit: int | None = None
    # Told each answer's usage once it is known (per-minute token limits count it).
    on_usage: Callable[[dict[str, Any]], Awaitable[None]] | None = None


class Gateway:
    """The inference routes' shared parts and steps."""

    def __init__(
        self,
        keys: KeyCache,
        forwarder: Forwarder,
        usage: UsageWriter,
        state: ViewDatabase,
        *,
        cold: ColdStarter | None = None,
        concurrency: ConcurrencyLimiter | None = None,
        metrics: ApiMetrics | None = None,
    ) -> None:
        self.keys, self.forwarder, self.usage, self._state = keys, forwarder, usage, state
        self._cold = cold
        self._concurrency = concurrency
        self._metrics = metrics

    async def admit(self, call: Call) -> str | None:
        """A lease on the deployment's concurrency (None when it has no limit); over the limit,
        RATE_LIMIT_EXCEEDED. Called before anything is sent, so the refusal is a clean 429."""
        limit = call.concurrency_limit
        if limit is None or self._concurrency is None:
            return None
        lease = await anyio.to_thread.run_sync(self._concurrency.acquire, call.deployment_id.hex, limit)
        if lease is None:
            raise RateLimitExceeded(
                f"This deployment's limit of {limit} concurrent requests is reached; retry shortly.",
                headers={"Retry-After": "1"},
            )
        return lease

    async def release(self, call: Call, lease: str | None) -> None:
        """Give back what ``admit`` took."""
        if lease is not None and self._concurrency is not None:
            await anyio.to_thread.run_sync(self._concurrency.release, call.deployment_id.hex, lease)

    def _open(self, authorization: str, deployment: uuid.UUID, shown: str, started: float) -> Call:
        """Authenticate, and check the instance (``shown`` as the client named it) exists and serves."""
        principal = inference_principal(self.keys, authorization, deployment.hex)
        return self.call_as(principal, deployment, shown, started)

    def call_as(self, principal: Principal, deployment: uuid.UUID, shown: str, started: float) -> Call:
        """The call of an authenticated ``principal`` on the deployment, if it exists and serves
        (or, scaled to zero, can be woken)."""
        found = self.forwarder.deployment(deployment)
        if found is None or found.state == "destroyed":
            raise InstanceNotFound(f"No instance {shown} (or it was destroyed).")
        cold = found.state in COLD and self._cold is not None
        if not cold and found.state not in SERVING:
            raise InstanceNotRunning(f"{shown} is {found.state}, not running: poll its status first.")
        return Call(
            deployment_id=deployment,
            model=found.model,
            principal=principal,
            started=started,
            cold=cold,
            concurrency_limit=found.concurrency_limit,
        )

    async def woken(self, call: Call, shown: str) -> Call:
        """``call`` once its deployment serves: a cold one is held until a replica is ready."""
        if call.cold and self._cold is not None:
            await self._cold.ready(call.deployment_id, shown)
        return call

    async def _opened(self, authorization: str, deployment: uuid.UUID, shown: str) -> Call:
        """``_open`` on the event loop when its lookups are cached, in a thread when not."""
        started = time.perf_counter()
        if self.forwarder.cached(deployment) and self.keys.cached(bearer_secret(authorization)):
            try:
                call = self._open(authorization, deployment, shown, started)
            except (InstanceNotFound, InstanceNotRunning):
                # A refusal goes by what the views hold now, not by a state cached a moment ago
                # (a deployment destroyed since then is not found, not "not running").
                self.forwarder.forget(deployment)
                call = await anyio.to_thread.run_sync(self._open, authorization, deployment, shown, started)
        else:
            call = await anyio.to_thread.run_sync(self._open, authorization, deployment, shown, started)
        return await self.woken(call, shown)

    async def open(self, authorization: str, instance_id: str) -> Call:
        """The call on the instance the path names."""
        return await self._opened(authorization, ids.parse_deployment_id(instance_id), instance_id)

    async def open_by_key(self, authorization: str) -> Call:
        """The call on the instance an ``auxk_`` key belongs to."""
        secret = bearer_secret(authorization)
        if self.keys.cached(secret):
            principal = self.keys.lookup(secret)
        else:
            principal = await anyio.to_thread.run_sync(self.keys.lookup, secret)
        if principal is None or principal.deployment_uuid is None:
            raise InvalidApiKey("This route takes an instance's auxk_ key.")
        deployment = uuid.UUID(hex=principal.deployment_uuid)
        return await self._opened(authorization, deployment, ids.instance_ref(deployment))

    def _record(self, call: Call, usage: dict[str, Any], status: int, *, streamed: bool) -> None:
        """Queue the usage record (no I/O: the writer saves it in its next batch)."""
        record = RecordUsage(
            record_id=uuid.uuid4(),
            at=datetime.now(UTC),
            deployment_id=call.deployment_id.hex,
            model=call.model,
            account_id=call.principal.account_id,
            key_id=call.principal.key_id,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            audio_ms=int(usage.get("audio_ms", 0)),
            latency_ms=(time.perf_counter() - call.started) * 1000,
            status=status,
            streamed=streamed,
        )
        self.usage.submit(record)
        if self._metrics is not None:
            self._metrics.observe(record)

    def _forget_secret(self, deployment_id: uuid.UUID) -> None:
        with self._state.transaction() as tx:
            secrets.forget(tx, deployment_id)

    async def _finish(self, call: Call, usage: dict[str, Any], *, streamed: bool = False) -> None:
        if call.on_usage is not None:
            await call.on_usage(usage)
        self._record(call, usage, 200, streamed=streamed)
        if self.forwarder.first_use(call.deployment_id):
            # An instance key's first use retires its one-time showing.
            await anyio.to_thread.run_sync(self._forget_secret, call.deployment_id)

    async def finish(self, call: Call, usage: dict[str, Any]) -> None:
        """Record a call's usage (``prompt_tokens``, ``completion_tokens``, ``audio_ms``)."""
        await self._finish(call, usage)

    async def native(self, call: Call, chat: NativeChat) -> Any:
        """The first document's own chat shape, answered whole."""
        messages = ([{"role": "system", "content": chat.system}] if chat.system else []) + [
            {"role": "user", "content": chat.message}
        ]
        upstream = {
            "model": call.model,
            "messages": messages,
            "max_tokens": chat.max_tokens,
            "temperature": chat.temperature,
        }
        lease = await self.admit(call)
        try:
            status, answer = await self.forwarder.complete(
                call.deployment_id, {k: v for k, v in upstream.items() if v is not None}
            )
        finally:
            await self.release(call, lease)
        if status != 200:
            raise upstream_error(status, answer)
        usage = answer.get("usage") or {}
        await self._finish(call, usage)
        data = {
            "message": answer["choices"][0]["message"].get("content") or "",
            "model": call.model,
            "usage": usage,
            "response_time_ms": round((time.perf_counter() - call.started) * 1000),
        }
        return {"success": True, "data": data}

    async def complete(self, call: Call, body: dict[str, Any]) -> Any:
        """An OpenAI chat completion, whole; the request's ``model`` is echoed, not used."""
        lease = await self.admit(call)
        try:
            status, answer = await self.forwarder.complete(call.deployment_id, {**body, "model": call.model})
        finally:
            await self.release(call, lease)
        if status != 200:
            raise upstream_error(status, answer)
        await self._finish(call, answer.get("usage") or {})
        return {**answer, "model": body.get("model") or call.model}

    async def stream(
        self, call: Call, body: dict[str, Any], lease: str | None = None
    ) -> AsyncGenerator[bytes]:
        """An OpenAI chat completion as server-sent events, usage recorded at the end;
        ``lease`` (from ``admit``, taken before the response starts) is given back at its end.
        The replica's refusal is raised as the client's error at the first step, so a route
        that opens the stream before answering still answers it with a status.

        One generator over the replica's lines, not a chain of them: each token passes
        through every layer, on the core the engine computes on."""
        echoed = body.get("model") or call.model
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        upstream = {**body, "model": call.model, "stream_options": {"include_usage": True}}
        usage: dict[str, Any] = {}
        # The replica echoes the model it was sent: a chunk that names the one the client sent
        # and carries no usage goes on as it came, not decoded and encoded again per token.
        as_sent = echoed == call.model
        try:
            async for line in self.forwarder.stream(call.deployment_id, upstream):
                if not line.startswith(b"data: ") or line == b"data: [DONE]":
                    continue
                if as_sent and b'"usage"' not in line:
                    yield line + b"\n\n"
                    continue
                chunk = msgspec.json.decode(line[6:])
                if chunk.get("usage"):
                    usage = chunk["usage"]
                    if not wants_usage:
                        continue
                chunk["model"] = echoed
                yield b"data: " + msgspec.json.encode(chunk) + b"\n\n"
            yield b"data: [DONE]\n\n"
            await self._finish(call, usage, streamed=True)
        except UpstreamRefused as refused:
            raise upstream_error(refused.status, refused.answer) from None
        finally:
            await self.release(call, lease)
