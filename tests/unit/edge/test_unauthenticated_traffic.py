"""Unauthenticated traffic: limited per address, a bounded key cache, MCP behind a valid key."""

from __future__ import annotations

import secrets
from typing import Any

from modelyard.api.auth import NEGATIVE_MAX_KEYS, KeyCache

from .conftest import Edge, EdgeFactory

MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _junk() -> dict[str, str]:
    return {"Authorization": f"Bearer auxen_live_{secrets.token_urlsafe(24)}"}


def test_random_keys_share_their_address_bucket(make_edge: EdgeFactory) -> None:
    edge = make_edge(MODELYARD_RATE_LIMIT_RPM="5")
    answers = [edge.client.get("/v1/balance", headers=_junk()) for _ in range(12)]
    codes = [a.status_code for a in answers]
    # Each junk key once had a bucket of its own: twelve 401s. Now they share the address's.
    assert codes[:5] == [401] * 5
    assert set(codes[5:]) == {429}
    assert answers[-1].json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    # A valid key keeps its own bucket: junk from the same address does not starve it.
    assert edge.client.get("/v1/balance", headers=edge.auth).status_code == 200


def test_the_key_cache_is_bounded_and_unknown_keys_do_not_evict_known_ones(edge: Edge) -> None:
    cache = KeyCache(edge.core.views)
    assert cache.lookup(edge.key) is not None
    for _ in range(3 * NEGATIVE_MAX_KEYS):
        assert cache.lookup(f"auxk_{secrets.token_urlsafe(16)}") is None
    assert len(cache) <= NEGATIVE_MAX_KEYS + 1
    assert cache.known(edge.key) is True


def _mcp(edge: Edge, headers: dict[str, str], method: str, params: dict[str, Any]) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return edge.client.post("/mcp", json=body, headers=MCP_HEADERS | headers)


INITIALIZE = {
    "protocolVersion": "2025-06-18",
    "capabilities": {},
    "clientInfo": {"name": "test", "version": "0"},
}


def test_mcp_needs_a_valid_management_key_before_a_session_opens(edge: Edge) -> None:
    missing = _mcp(edge, {}, "initialize", INITIALIZE)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "API_KEY_REQUIRED"
    junk = _mcp(edge, _junk(), "initialize", INITIALIZE)
    assert junk.status_code == 401
    assert junk.json()["error"]["code"] == "INVALID_API_KEY"
    opened = _mcp(edge, edge.auth, "initialize", INITIALIZE)
    assert opened.status_code == 200, opened.text


def test_an_instance_id_that_is_a_path_is_not_found(edge: Edge) -> None:
    for bad in ("../balance", "inst_../../v1/balance", "../../v1/instances"):
        called = _mcp(
            edge, edge.auth, "tools/call", {"name": "get_instance", "arguments": {"instance_id": bad}}
        )
        assert called.status_code == 200, called.text
        result = called.json()["result"]
        assert result["isError"] is True
        assert "INSTANCE_NOT_FOUND" in result["content"][0]["text"]
        assert "balance_usd" not in called.text
