"""Routed chat (``POST /api/v1/public/chat/completions``) and an account's upstream providers.

The chat takes OpenAI's request and answers OpenAI's shape; ``X-Route-Target`` says which
target answered (``deployment:dep_…`` or ``upstream:<name>``). The providers routes keep
the account's own OpenAI-compatible upstreams (``PUT …/providers/{name}``, ``GET
…/providers``, ``DELETE …/providers/{name}``); a provider's key is never shown back.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, RawBody, SkipValidation
from msgspec import UNSET

from modelyard.adapters.engines.upstream import Upstream
from modelyard.api.auth import Principal
from modelyard.api.bodies import decode
from modelyard.api.errors import COMMON_ERRORS, COMMON_OPENAI_ERRORS, OPENAI_ERRORS, RouteNotFound
from modelyard.api.gateway.requests import openai_body
from modelyard.api.gateway.sse import EventStream
from modelyard.api.routing.router import ChatRouter
from modelyard.domain.shared.errors import InvalidRequest

Authorization = Annotated[str, HeaderParameter(name="authorization", required=False)]
ROUTE_HEADER = "X-Route-Target"


class ProviderBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PUT …/providers/{name}``: where the upstream is, its key, what it is routed for."""

    base_url: str
    api_key: str = ""
    models: list[str] = msgspec.field(default_factory=lambda: ["*"])
    input_price_micros_per_mtok: int = 0
    output_price_micros_per_mtok: int = 0


class RoutedChatController(Controller):
    """The second dialect's routed chat: by ``model``, to a deployment or an upstream."""

    path = "/api/v1/public/chat/completions"
    tags = ["inference"]

    @post(
        operation_id="routedChatCompletions",
        status_code=200,
        responses=COMMON_OPENAI_ERRORS,
        opt=OPENAI_ERRORS,
    )
    async def chat(
        self,
        routing: NamedDependency[SkipValidation[ChatRouter]],
        body: RawBody,
        authorization: Authorization = "",
    ) -> Response[Any]:
        """OpenAI chat, answered by the first target of the model's route that can."""
        principal, started = await routing.caller(authorization)
        request = openai_body(body)
        if request.model is UNSET:
            raise InvalidRequest("Routed chat needs a 'model': it chooses the route.")
        call, route = await routing.open(principal, started, request.model)
        if request.streamed:
            label, events = await routing.stream(call, route, request)
            return EventStream(events, headers={ROUTE_HEADER: label})
        label, answer = await routing.complete(call, route, request)
        return Response(answer, headers={ROUTE_HEADER: label})


class ProvidersController(Controller):
    """An account's own upstream providers, for its routed chats."""

    path = "/api/v1/public/providers"
    tags = ["routing"]

    @put("/{name:str}", operation_id="putProvider", status_code=200, responses=COMMON_ERRORS)
    async def put_provider(
        self,
        request: Request[Principal, Any, Any],
        routing: NamedDependency[SkipValidation[ChatRouter]],
        name: FromPath[str],
        body: RawBody,
    ) -> dict[str, Any]:
        """Add or replace the upstream ``name`` of the caller's account."""
        given = decode(body, ProviderBody)
        upstream = decode(msgspec.json.encode({"name": name, **msgspec.structs.asdict(given)}), Upstream)
        await anyio.to_thread.run_sync(routing.put_upstream, request.user.account_id, upstream)
        return _shown(upstream)

    @get(operation_id="listProviders", responses=COMMON_ERRORS)
    async def list_providers(
        self, request: Request[Principal, Any, Any], routing: NamedDependency[SkipValidation[ChatRouter]]
    ) -> dict[str, Any]:
        """The account's upstreams, in route order, keys hidden."""
        found = await anyio.to_thread.run_sync(routing.upstreams_of, request.user.account_id)
        return {"providers": [_shown(u) for u in found]}

    @delete("/{name:str}", operation_id="deleteProvider", status_code=200, responses=COMMON_ERRORS)
    async def delete_provider(
        self,
        request: Request[Principal, Any, Any],
        routing: NamedDependency[SkipValidation[ChatRouter]],
        name: FromPath[str],
    ) -> dict[str, Any]:
        """Forget the upstream ``name`` of the caller's account."""
        if not await anyio.to_thread.run_sync(routing.remove_upstream, request.user.account_id, name):
            raise RouteNotFound(f"No provider named {name!r} on this account.")
        return {"deleted": name}


def _shown(upstream: Upstream) -> dict[str, Any]:
    shown = msgspec.structs.asdict(upstream)
    shown["api_key"] = upstream.key_hint
    return shown
