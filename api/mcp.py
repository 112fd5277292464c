"""The MCP server at ``/mcp`` (streamable HTTP): the eight management capabilities as tools.

Each tool authenticates the caller's ``Authorization`` header with the same key cache the
REST routes use and calls the same in-process use cases (``Instances``), so an agent using
MCP gets exactly what the REST API gives: the same checks, the same error codes, the same
idempotency, without a loopback HTTP call. Tool descriptions are written for an LLM agent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import anyio
import msgspec
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette

from modelyard.api import idempotency
from modelyard.api.auth import KeyCache, Principal, management_principal
from modelyard.api.instances.actions import Instances
from modelyard.api.instances.schemas import ProvisionRequest, ScaleRequest
from modelyard.domain.shared.errors import InvalidRequest, ModelyardError

INSTRUCTIONS = (
    "modelyard provisions private model deployments billed per minute from prepaid credits. "
    "Typical flow: list_models -> provision (returns at once, status 'provisioning') -> "
    "get_instance every few seconds until status is 'running' (it then carries 'endpoint', "
    "'openai_base_url' and the instance 'api_key', shown until its first use) -> call the model "
    "with that key -> destroy when done (billing stops at once)."
)


class Tools:
    """Runs a use case for the caller of a tool, turning a refusal into a tool error."""

    def __init__(self, instances: Instances, keys: KeyCache) -> None:
        self.instances, self._keys = instances, keys

    async def call(self, ctx: Context, action: Callable[[Principal], object]) -> dict[str, Any]:
        """Authenticate the caller's management key, run ``action`` off the event loop, answer its data."""
        authorization = (ctx.headers or {}).get("authorization", "")

        def run() -> object:
            return action(management_principal(self._keys, authorization))

        try:
            answer = await anyio.to_thread.run_sync(run)
        except ModelyardError as exc:
            raise ToolError(f"{exc.code}: {exc.message}") from exc
        body = (
            msgspec.json.decode(answer.body)
            if isinstance(answer, idempotency.Outcome)
            else msgspec.to_builtins(answer)
        )
        data: dict[str, Any] = body["data"]
        return data


R = TypeVar("R", bound=msgspec.Struct)


def _typed(kind: type[R], fields: Mapping[str, object]) -> R:
    """A tool's arguments as the REST route's request Struct, with the same bounds and words."""
    try:
        return msgspec.convert(fields, kind)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid arguments: {exc}.") from None


def build_mcp(instances: Instances, keys: KeyCache) -> tuple[MCPServer[Any], Starlette]:
    """The MCP server and its streamable-HTTP ASGI app (served at the mount point itself)."""
    server: MCPServer[Any] = MCPServer(name="modelyard", instructions=INSTRUCTIONS)
    tools = Tools(instances, keys)

    @server.tool()
    async def list_models(ctx: Context) -> dict[str, Any]:
        """List the models that can be provisioned, with context window, plan and price per hour."""
        return await tools.call(ctx, lambda _: instances.models())

    @server.tool()
    async def provision(
        ctx: Context, model: str, capacity: int = 1, tier: str = "dedicated", idempotency_key: str = ""
    ) -> dict[str, Any]:
        """Provision a private instance of `model` (capacity 1, 2, 4 or 8; tier 'dedicated' or
        'shared'). Returns immediately with status 'provisioning': poll get_instance until
        'running'. When retrying a provision after an error or timeout, pass the SAME
        idempotency_key as the first attempt so no second instance is created."""
        fields = {"model": model, "capacity": capacity, "tier": tier}
        return await tools.call(
            ctx,
            lambda who: instances.provision(who, _typed(ProvisionRequest, fields), idempotency_key or None),
        )

    @server.tool()
    async def get_instance(ctx: Context, instance_id: str) -> dict[str, Any]:
        """Get one instance. Once status is 'running' it has 'endpoint', 'openai_base_url' and
        'api_key' (the auxk_ inference key, shown until it is first used: save it)."""
        return await tools.call(ctx, lambda who: instances.show(who, instance_id))

    @server.tool()
    async def list_instances(ctx: Context) -> dict[str, Any]:
        """List this account's instances that are not destroyed, with status and cost so far."""
        return await tools.call(ctx, instances.list)

    @server.tool()
    async def scale(ctx: Context, instance_id: str, capacity: int) -> dict[str, Any]:
        """Change an instance's capacity to 1, 2, 4 or 8 replicas (cost x1.0, x1.8, x3.3, x6.0)."""
        fields = {"capacity": capacity}
        return await tools.call(
            ctx, lambda who: instances.scale(who, instance_id, _typed(ScaleRequest, fields), None)
        )

    @server.tool()
    async def destroy(ctx: Context, instance_id: str) -> dict[str, Any]:
        """Destroy an instance. Billing stops at once; the instance then disappears."""
        return await tools.call(ctx, lambda who: instances.destroy(who, instance_id, None))

    @server.tool()
    async def balance(ctx: Context) -> dict[str, Any]:
        """The account's prepaid USD balance, what was credited and what was charged."""
        return await tools.call(ctx, instances.balance)

    @server.tool()
    async def usage(ctx: Context) -> dict[str, Any]:
        """Charges so far: minutes metered and USD per instance, and the total."""
        return await tools.call(ctx, instances.usage)

    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app = server.streamable_http_app(
        streamable_http_path="/", stateless_http=True, json_response=True, transport_security=security
    )
    return server, app
