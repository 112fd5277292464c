"""Routed chat: a ``model`` name becomes a list of targets, tried in order until one answers.

The route for a model is, in order: the caller's deployments serving it (or the one its
id names, ``dep_…``/``inst_…``), then the account's own upstreams routed for it, then the
operator's. A target that fails in a way another may not (no replica serving, a 5xx, a
429, a timeout, a refused connection) hands the request to the next; a target that refuses
the request itself (any other 4xx) answers the client, since the next would refuse it too.
Every attempt is recorded as usage (the answer's tokens, or the failure's status), with
its target and, for an upstream, its per-token cost. Streams fall back only before their
first event: after that the client has the target's answer.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec
from cachetools import TTLCache

from modelyard.adapters.engines.upstream import FALL_BACK_ON, Upstream, UpstreamClient, UpstreamFailed
from modelyard.adapters.state import upstreams
from modelyard.adapters.views.db import ViewDatabase
from modelyard.api.auth import KeyCache, Principal, bearer_secret
from modelyard.api.errors import EngineError, InvalidApiKey
from modelyard.api.gateway.forwarder import Forwarder, UpstreamRefused
from modelyard.api.gateway.requests import ChatRequest, upstream_error
from modelyard.api.gateway.usage import UsageWriter
from modelyard.domain.keys.aggregate import KeyKind
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import InstanceNotRunning, ModelNotFound, ModelyardError
from modelyard.domain.usage.service import RecordUsage
from modelyard.projections.deployments.queries import SERVING, Deployment, instances_of_account

# Routes change when a deployment starts or ends or an upstream is added: a second is plenty.
ROUTES_TTL_S = 1.0
ROUTES_CACHED = 10_000
# Upstream usage records name their upstream by a stable id in the deployment's place.
_UPSTREAM_IDS = uuid.UUID("5b1d7a52-4c0e-4d43-9a51-0f4f5e0b9a11")


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """One place a routed chat may go: a deployment of the caller's, or an upstream."""

    deployment: uuid.UUID | None = None
    model: str
    upstream: Upstream | None = None

    @property
    def label(self) -> str:
        """How the answer's ``X-Route-Target`` header names it."""
        if self.upstream is not None:
            return f"upstream:{self.upstream.name}"
        assert self.deployment is not None
        return f"deployment:{ids.deployment_ref(self.deployment)}"


class Routed(msgspec.Struct, frozen=True, kw_only=True):
    """A call on its way: who asked, for what, since when."""

    principal: Principal
    model: str
    started: float


class ChatRouter:
    """Resolves a model's route and walks it; handed to the routed-chat handler by DI."""

    def __init__(
        self,
        *,
        keys: KeyCache,
        forwarder: Forwarder,
        usage: UsageWriter,
        views: ViewDatabase,
        state: ViewDatabase,
        operator: list[Upstream],
        client: UpstreamClient,
    ) -> None:
        self._keys, self._forwarder, self._usage = keys, forwarder, usage
        self._views, self._state, self._operator, self.client = views, state, operator, client
        self._routes: TTLCache[tuple[str, str, str], list[Target]] = TTLCache(
            ROUTES_CACHED, ROUTES_TTL_S, timer=time.monotonic
        )

    async def caller(self, authorization: str) -> tuple[Principal, float]:
        """Who calls (any valid key), and when the call began: checked before the body is read."""
        started = time.perf_counter()
        secret = bearer_secret(authorization)
        principal = self._keys.lookup(secret) if self._keys.cached(secret) else None
        if principal is None:
            principal = await anyio.to_thread.run_sync(self._keys.lookup, secret)
        if principal is None:
            raise InvalidApiKey("The key is unknown, revoked, or from another environment.")
        return principal, started

    async def open(self, principal: Principal, started: float, model: str) -> tuple[Routed, list[Target]]:
        """The call and the route for ``model`` (MODEL_NOT_FOUND when there is none)."""
        key = (principal.account_id, principal.key_id, model)
        route = self._routes.get(key)
        if route is None:
            route = self._routes[key] = await anyio.to_thread.run_sync(self._route, principal, model)
        if not route:
            raise ModelNotFound(
                f"No deployment of yours serves {model!r} and no upstream is routed for it: "
                "provision it, or add an upstream provider for it."
            )
        return Routed(principal=principal, model=model, started=started), route

    def _route(self, principal: Principal, model: str) -> list[Target]:
        with self._views.read() as tx:
            rows = instances_of_account(tx, principal.account_id)
        with self._state.read() as tx:
            own = upstreams.of_account(tx, principal.account_id)
        named = _deployment_named(model)
        serving = [
            Target(deployment=row.id, model=row.model)
            for row in rows
            if row.state in SERVING and _may_use(principal, row) and (row.id == named or row.model == model)
        ]
        if principal.kind is KeyKind.INSTANCE:
            return serving  # an instance key reaches its own instance, nothing else
        return serving + [Target(upstream=u, model=model) for u in [*own, *self._operator] if u.serves(model)]

    async def complete(
        self, call: Routed, route: list[Target], request: ChatRequest
    ) -> tuple[str, dict[str, Any]]:
        """The first answer along the route, and the target that gave it."""
        failures: list[str] = []
        for target in route:
            try:
                status, answer = await self._complete(target, request)
            except (UpstreamFailed, InstanceNotRunning) as failed:
                failures.append(self._failed(call, target, failed))
                continue
            if status != 200:
                self._record(call, target, {}, status, error="UPSTREAM_REFUSED")
                raise upstream_error(status, answer)
            self._record(call, target, answer.get("usage") or {}, 200)
            return target.label, {**answer, "model": call.model}
        raise _exhausted(failures)

    async def _complete(self, target: Target, request: ChatRequest) -> tuple[int, dict[str, Any]]:
        body = request.forwarded()
        if target.upstream is not None:
            return await self.client.complete(target.upstream, {**body, "model": target.model})
        assert target.deployment is not None
        status, answer = await self._forwarder.complete(target.deployment, {**body, "model": target.model})
        if status in FALL_BACK_ON:
            raise UpstreamFailed(status, f"answered {status}")
        return status, answer

    async def stream(
        self, call: Routed, route: list[Target], request: ChatRequest
    ) -> tuple[str, AsyncIterator[bytes]]:
        """The first target's stream that opens, and its label; usage is recorded at its end."""
        wants_usage = bool(request.stream_options and request.stream_options.include_usage)
        body = {**request.forwarded(), "stream_options": {"include_usage": True}}
        failures: list[str] = []
        for target in route:
            lines = self._lines(target, {**body, "model": target.model})
            try:
                first = await anext(lines, None)
            except (UpstreamFailed, InstanceNotRunning) as failed:
                failures.append(self._failed(call, target, failed))
                continue
            return target.label, self._relay(call, target, first, lines, wants_usage=wants_usage)
        raise _exhausted(failures)

    async def _lines(self, target: Target, body: dict[str, Any]) -> AsyncGenerator[bytes]:
        if target.upstream is not None:
            async for line in self.client.stream(target.upstream, body):
                yield line
            return
        assert target.deployment is not None
        try:
            async for line in self._forwarder.stream(target.deployment, body):
                yield line
        except UpstreamRefused as refused:
            if refused.status in FALL_BACK_ON:
                raise UpstreamFailed(refused.status, f"answered {refused.status}") from None
            raise UpstreamFailed(refused.status, "refused the request", refused.answer) from None

    async def _relay(
        self,
        call: Routed,
        target: Target,
        first: bytes | None,
        lines: AsyncGenerator[bytes],
        *,
        wants_usage: bool,
    ) -> AsyncIterator[bytes]:
        """The target's events with the caller's model echoed; usage kept for the record."""
        usage: dict[str, Any] = {}
        try:
            async for line in _chain(first, lines):
                if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    usage = chunk["usage"]
                    if not wants_usage:
                        continue
                chunk["model"] = call.model
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"
            self._record(call, target, usage, 200, streamed=True)
        finally:
            await lines.aclose()

    def _failed(self, call: Routed, target: Target, failed: UpstreamFailed | InstanceNotRunning) -> str:
        """Record a failed attempt; its account for the client (never a key or a URL)."""
        if isinstance(failed, UpstreamFailed) and failed.final:
            self._record(call, target, {}, failed.status, error="UPSTREAM_REFUSED")
            raise upstream_error(failed.status, failed.answer or {})
        status = failed.status if isinstance(failed, UpstreamFailed) else 409
        self._record(call, target, {}, status, error="ROUTE_TARGET_FAILED")
        reason = failed.reason if isinstance(failed, UpstreamFailed) else "no replica serving"
        return f"{target.label} {reason}"

    def _record(
        self,
        call: Routed,
        target: Target,
        usage: dict[str, Any],
        status: int,
        *,
        error: str | None = None,
        streamed: bool = False,
    ) -> None:
        """Queue the attempt's usage record (no I/O: the writer saves it in its next batch)."""
        deployment = target.deployment or uuid.uuid5(
            _UPSTREAM_IDS, f"{call.principal.account_id}:{target.label}"
        )
        self._usage.submit(
            RecordUsage(
                record_id=uuid.uuid4(),
                at=datetime.now(UTC),
                deployment_id=deployment.hex,
                model=target.model,
                account_id=call.principal.account_id,
                key_id=call.principal.key_id,
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
                latency_ms=(time.perf_counter() - call.started) * 1000,
                status=status,
                error_code=error,
                streamed=streamed,
                route=target.label,
                cost_micros=target.upstream.cost_micros(usage) if target.upstream else 0,
            )
        )

    def put_upstream(self, account_id: str, upstream: Upstream) -> None:
        """Keep an account's own upstream (the route cache forgets within ``ROUTES_TTL_S``)."""
        with self._state.transaction() as tx:
            upstreams.put(tx, account_id, upstream)

    def remove_upstream(self, account_id: str, name: str) -> bool:
        """Forget an account's upstream; whether there was one."""
        with self._state.transaction() as tx:
            return upstreams.remove(tx, account_id, name)

    def upstreams_of(self, account_id: str) -> list[Upstream]:
        """The account's own upstreams, in route order."""
        with self._state.read() as tx:
            return upstreams.of_account(tx, account_id)


async def _chain(first: bytes | None, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first is not None:
        yield first
    async for line in rest:
        yield line


def _deployment_named(model: str) -> uuid.UUID | None:
    """The deployment a ``model`` of ``dep_…``/``inst_…`` names, if it names one."""
    try:
        return ids.parse_deployment_id(model)
    except ModelyardError:
        return None


def _may_use(principal: Principal, row: Deployment) -> bool:
    return principal.kind is KeyKind.MANAGEMENT or principal.may_infer_on(row.id.hex)


def _exhausted(failures: list[str]) -> EngineError:
    return EngineError("Every target of this model's route failed: " + "; ".join(failures) + ".")
