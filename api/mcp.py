"""The MCP server at ``/mcp`` (streamable HTTP): the eight management capabilities as tools.

Each tool calls this API's own routes on loopback with the caller's ``Authorization``
header, so an agent using MCP gets exactly what the REST API gives: the same checks, the
same error codes, the same idempotency. Tool descriptions are written for an LLM agent.
"""

from __future__ import annotations

from typing import Any

import httpx
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette

INSTRUCTIONS = (
    "modelyard provisions private model deployments billed per minute from prepaid credits. "
    "Typical flow: list_models -> provision (returns at once, status 'provisioning') -> "
    "get_instance every few seconds until status is 'running' (it then carries 'endpoint', "
    "'openai_base_url' and the instance 'api_key', shown until its first use) -> call the model "
    "with that key -> destroy when done (billing stops at once)."
)


class Tools:
    """The tools, bound to the API's own base URL."""

    def __init__(self, base_url: str) -> None:
        self._base_url = base_url

    async def call(self, ctx: Context, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Call the REST route with the caller's key; an error envelope becomes a tool error."""
        headers = {"Authorization": (ctx.headers or {}).get("authorization", "")}
        headers |= kwargs.pop("headers", {})
        async with httpx.AsyncClient(base_url=self._base_url, timeout=60) as client:
            response = await client.request(method, path, headers=headers, **kwargs)
        body = response.json()
        if not body.get("success"):
            error = body.get("error", {})
            raise ToolError(f"{error.get('code')}: {error.get('message')}")
        data: dict[str, Any] = body["data"]
        return data


def build_mcp(base_url: str) -> tuple[MCPServer[Any], Starlette]:
    """The MCP server and its streamable-HTTP ASGI app (served at the mount point itself)."""
    server: MCPServer[Any] = MCPServer(name="modelyard", instructions=INSTRUCTIONS)
    tools = Tools(base_url)

    @server.tool()
    async def list_models(ctx: Context) -> dict[str, Any]:
        """List the models that can be provisioned, with context window, plan and price per hour."""
        return await tools.call(ctx, "GET", "/v1/models")

    @server.tool()
    async def provision(
        ctx: Context, model: str, capacity: int = 1, tier: str = "dedicated", idempotency_key: str = ""
    ) -> dict[str, Any]:
        """Provision a private instance of `model` (capacity 1, 2, 4 or 8; tier 'dedicated' or
        'shared'). Returns immediately with status 'provisioning': poll get_instance until
        'running'. When retrying a provision after an error or timeout, pass the SAME
        idempotency_key as the first attempt so no second instance is created."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"model": model, "capacity": capacity, "tier": tier}
        return await tools.call(ctx, "POST", "/v1/provision", json=body, headers=headers)

    @server.tool()
    async def get_instance(ctx: Context, instance_id: str) -> dict[str, Any]:
        """Get one instance. Once status is 'running' it has 'endpoint', 'openai_base_url' and
        'api_key' (the auxk_ inference key, shown until it is first used: save it)."""
        return await tools.call(ctx, "GET", f"/v1/instances/{instance_id}")

    @server.tool()
    async def list_instances(ctx: Context) -> dict[str, Any]:
        """List this account's instances that are not destroyed, with status and cost so far."""
        return await tools.call(ctx, "GET", "/v1/instances")

    @server.tool()
    async def scale(ctx: Context, instance_id: str, capacity: int) -> dict[str, Any]:
        """Change an instance's capacity to 1, 2, 4 or 8 replicas (cost x1.0, x1.8, x3.3, x6.0)."""
        return await tools.call(
            ctx, "POST", f"/v1/instances/{instance_id}/scale", json={"capacity": capacity}
        )

    @server.tool()
    async def destroy(ctx: Context, instance_id: str) -> dict[str, Any]:
        """Destroy an instance. Billing stops at once; the instance then disappears."""
        return await tools.call(ctx, "DELETE", f"/v1/instances/{instance_id}")

    @server.tool()
    async def balance(ctx: Context) -> dict[str, Any]:
        """The account's prepaid USD balance, what was credited and what was charged."""
        return await tools.call(ctx, "GET", "/v1/balance")

    @server.tool()
    async def usage(ctx: Context) -> dict[str, Any]:
        """Charges so far: minutes metered and USD per instance, and the total."""
        return await tools.call(ctx, "GET", "/v1/usage")

    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app = server.streamable_http_app(
        streamable_http_path="/", stateless_http=True, json_response=True, transport_security=security
    )
    return server, app
