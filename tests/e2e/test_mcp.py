"""The official mcp client over streamable HTTP: eight tools, provision, poll, destroy."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from .conftest import Yard

pytestmark = pytest.mark.e2e
EIGHT = {"list_models", "provision", "get_instance", "list_instances", "scale", "destroy", "balance", "usage"}


def _data(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    if result.structured_content:
        return dict(result.structured_content)
    return dict(json.loads(result.content[0].text))


async def _flow(url: str, key: str) -> None:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        listed = await session.list_tools()
        assert {tool.name for tool in listed.tools} == EIGHT
        provision = next(tool for tool in listed.tools if tool.name == "provision")
        assert "same idempotency_key" in " ".join((provision.description or "").lower().split())

        models = _data(await session.call_tool("list_models", {}))
        assert any(m["id"] == "smollm2-135m" for m in models["models"])
        created = _data(
            await session.call_tool("provision", {"model": "smollm2-135m", "idempotency_key": "mcp-1"})
        )
        retried = _data(
            await session.call_tool("provision", {"model": "smollm2-135m", "idempotency_key": "mcp-1"})
        )
        instance_id = created["instance"]["id"]
        assert retried["instance"]["id"] == instance_id
        deadline = time.monotonic() + 60
        while (got := _data(await session.call_tool("get_instance", {"instance_id": instance_id})))[
            "instance"
        ]["status"] != "running":
            assert time.monotonic() < deadline
            await anyio.sleep(0.5)
        assert got["instance"]["api_key"].startswith("auxk_")
        assert _data(await session.call_tool("list_instances", {}))["count"] == 1
        assert _data(await session.call_tool("balance", {}))["balance_usd"]
        bad = await session.call_tool("scale", {"instance_id": instance_id, "capacity": 3})
        assert bad.is_error
        assert "INVALID_CAPACITY" in bad.content[0].text
        # The REST route's bounds hold for a tool's arguments too, in our words.
        long = await session.call_tool("provision", {"model": "m" * 200})
        assert long.is_error
        assert "INVALID_REQUEST: Invalid arguments: Expected `str` of length <= 128" in long.content[0].text
        _data(await session.call_tool("destroy", {"instance_id": instance_id}))
        assert "charged_usd" in _data(await session.call_tool("usage", {}))


def test_mcp_tools_provision_poll_destroy(simulated: Yard) -> None:
    anyio.run(_flow, simulated.urls[0], simulated.key)


def test_mcp_without_a_key_gets_the_documented_error_before_a_session_opens(simulated: Yard) -> None:
    async def flow() -> None:
        async with httpx2.AsyncClient(timeout=30) as http:
            answer = await http.post(
                f"{simulated.urls[0]}/mcp",
                json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}},
                headers={"Accept": "application/json, text/event-stream"},
            )
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "API_KEY_REQUIRED"

    anyio.run(flow)
