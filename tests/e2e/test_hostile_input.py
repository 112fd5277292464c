"""Hostile bodies on every route that reads one: nested ten thousand deep, mistyped, oversized.

Against ``modelyard serve`` on the simulated engine with a running instance, so the gateway's
routes reach a real replica. Every answer is a 4xx with the documented code, in its route
family's shape (the envelope, or OpenAI's on the OpenAI-compatible routes), and no answer
shows an internal address, a file path or an exception's text.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import openai
import pytest

from .conftest import Yard
from .test_five_steps import poll_until

pytestmark = pytest.mark.e2e

LIMIT = 10_000_000  # Litestar's request body limit, in bytes
DEEP = b"[" * 10_000 + b"]" * 10_000
# What only a server's own state or an exception's text would show: an address (the API's
# own included: an error has no reason to name one), a source file, a traceback, a repr.
LEAK = re.compile(
    r"Traceback|Error\(|Exception\(|object at 0x|File \"|\.py\b|site-packages|127\.0\.0\.1|localhost:\d"
)

Expected = tuple[int, str]
Case = tuple[str, bytes, Expected]


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def _deep_in(body: dict[str, Any], field: str) -> bytes:
    """``body`` with ``field`` set to arrays nested ten thousand deep."""
    return _json({**body, field: "DEEP"}).replace(b'"DEEP"', DEEP)


def _common(valid: dict[str, Any], field: str) -> list[Case]:
    """Bodies every JSON route refuses the same way."""
    bad = (400, "INVALID_REQUEST")
    return [
        ("nested 10,000 deep", DEEP, bad),
        ("nested 10,000 deep, unterminated", b"[" * 10_000, bad),
        (f"{field} nested 10,000 deep", _deep_in(valid, field), bad),
        ("not JSON", b"{oops", bad),
        ("an array", _json([valid]), bad),
        ("an unknown field", _json({**valid, "bogus": 1}), bad),
        ("just over the body limit", _json({**valid, "pad": "x" * LIMIT}), (413, "PAYLOAD_TOO_LARGE")),
    ]


def _chat_cases(valid: dict[str, Any]) -> list[Case]:
    bad = (400, "INVALID_REQUEST")
    ask = [{"role": "user", "content": "hi"}]
    changes: list[tuple[str, dict[str, Any]]] = [
        ("role wizard", {"messages": [{"role": "wizard", "content": "x"}]}),
        ("temperature hot", {"temperature": "hot"}),
        ("temperature 3", {"temperature": 3}),
        ("top_p 2", {"top_p": 2}),
        ("n 1000", {"n": 1000}),
        ("n 2", {"n": 2}),
        ("stream_options not an object", {"stream": True, "stream_options": "yes"}),
        ("stream_options a list", {"stream": True, "stream_options": [1]}),
        ("stream_options without stream", {"stream_options": {"include_usage": True}}),
        ("max_tokens -1", {"max_tokens": -1}),
        ("max_tokens a string", {"max_tokens": "lots"}),
        ("five stop words", {"stop": ["a", "b", "c", "d", "e"]}),
        ("messages a string", {"messages": "hi"}),
        ("no messages", {"messages": []}),
        ("a tool without a function", {"tools": [{"type": "function"}]}),
        ("a 9.5 MB model", {"model": "m" * 9_500_000}),
        (
            "tools nested deep",
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": "P"}}]},
        ),
    ]
    cases = [(name, _json({**valid, "messages": ask, **change}), bad) for name, change in changes]
    cases[-1] = (cases[-1][0], cases[-1][1].replace(b'"P"', b'{"a": ' + DEEP + b"}"), bad)
    # Just under the limit: the replica reads all of it and finds it longer than its context.
    words = {"messages": [{"role": "user", "content": "w " * ((LIMIT - 200) // 2)}]}
    return [*cases, ("a prompt just under the body limit", _json({**valid, **words}), bad)]


def _native_cases() -> list[Case]:
    bad = (400, "INVALID_REQUEST")
    valid = {"message": "hi"}
    changes: list[dict[str, Any]] = [
        {"message": 5},
        {"message": ""},
        {"message": "x", "temperature": "hot"},
        {"message": "x", "max_tokens": 0},
        {"message": ["x"]},
        {"message": "x", "system": {"a": 1}},
    ]
    cases = [(f"native {change}", _json(change), bad) for change in changes]
    words = {"message": "w " * ((LIMIT - 200) // 2)}
    return [*cases, *_common(valid, "message"), ("a message just under the body limit", _json(words), bad)]


def _provision_cases() -> list[Case]:
    bad = (400, "INVALID_REQUEST")
    valid = {"model": "smollm2-135m"}
    return [
        ("a 9.5 MB name", _json({**valid, "name": "n" * 9_500_000}), bad),
        ("a 129-character name", _json({**valid, "name": "n" * 129}), bad),
        ("a name with a line break", _json({**valid, "name": "a\nb"}), bad),
        ("a 9.5 MB model", _json({"model": "m" * 9_500_000}), bad),
        ("a model number", _json({"model": 5}), bad),
        ("a tier number", _json({**valid, "tier": 5}), bad),
        ("capacity hot", _json({**valid, "capacity": "hot"}), (400, "INVALID_CAPACITY")),
        ("capacity 9.5 MB", _json({**valid, "capacity": "4" * 9_500_000}), (400, "INVALID_CAPACITY")),
        (
            "capacity nested 60 deep",
            _json({**valid, "capacity": json.loads("[" * 60 + "]" * 60)}),
            (400, "INVALID_CAPACITY"),
        ),
        ("billing nested", _json({**valid, "billing": {"a": [[{"b": 1}]]}}), (400, "INVALID_BILLING_MODE")),
        *_common(valid, "capacity"),
    ]


def _scale_cases() -> list[Case]:
    valid = {"capacity": 2}
    return [
        ("capacity hot", _json({"capacity": "hot"}), (400, "INVALID_CAPACITY")),
        ("capacity 9.5 MB", _json({"capacity": "x" * 9_500_000}), (400, "INVALID_CAPACITY")),
        ("no capacity", _json({}), (400, "INVALID_REQUEST")),
        *_common(valid, "capacity"),
    ]


def _problem(response: httpx.Response, expected: Expected, *, openai: bool) -> str | None:
    """What is wrong with one answer to a hostile body, or None."""
    if response.status_code >= 500 or LEAK.search(response.text):
        return "a server error or a leak"
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    fields = {"message", "type", "code", "param"} if openai else {"code", "message", "docs"}
    if (
        not isinstance(error, dict)
        or set(error) != fields
        or (not openai and body.get("success") is not False)
    ):
        return "not its route family's error shape"
    if not error["message"] or (response.status_code, error["code"]) != expected:
        return f"not {expected}"
    return None


def _check(response: httpx.Response, expected: Expected, *, openai: bool, case: str) -> None:
    problem = _problem(response, expected, openai=openai)
    assert problem is None, f"{case}: {problem}: {response.status_code} {response.text[:300]}"


def _instance(yard: Yard, client: httpx.Client) -> dict[str, Any]:
    created = client.post("/v1/provision", json={"model": "smollm2-135m"}).json()["data"]["instance"]
    return poll_until(client, str(created["id"]), "running")


def test_hostile_bodies_get_their_code_in_their_routes_shape_and_show_nothing_inside(simulated: Yard) -> None:
    url = simulated.urls[0]
    manage = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {simulated.key}"}, timeout=120)
    instance = _instance(simulated, manage)
    infer = httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {instance['api_key']}"}, timeout=120
    )
    iid = instance["id"]
    valid_chat = {"model": "anything", "messages": [{"role": "user", "content": "one two"}]}
    openai_cases = [*_chat_cases(valid_chat), *_common(valid_chat, "messages")]
    routes: list[tuple[httpx.Client, str, list[Case], bool]] = [
        (manage, "/v1/provision", _provision_cases(), False),
        (manage, f"/v1/instances/{iid}/scale", _scale_cases(), False),
        (infer, f"/v1/{iid}/chat", _native_cases(), False),
        (infer, f"/v1/{iid}/v1/chat/completions", openai_cases, True),
        (infer, "/v1/chat/completions", openai_cases, True),
    ]
    problems = []
    for client, path, cases, openai_shape in routes:
        for case, body, expected in cases:
            try:
                response = client.post(path, content=body, headers={"content-type": "application/json"})
            except httpx.TransportError as exc:  # an exception after the answer began: the stream breaks
                problems.append(f"{path} {case}: the answer broke off: {exc}")
                continue
            if problem := _problem(response, expected, openai=openai_shape):
                problems.append(f"{path} {case}: {problem}: {response.status_code} {response.text[:200]}")
    assert not problems, "\n".join(problems)
    # Nothing was half-written, and the instance still serves what is well formed.
    assert manage.get("/v1/instances").json()["data"]["count"] == 1
    assert manage.get(f"/v1/instances/{iid}").json()["data"]["instance"]["capacity"] == 1
    answer = infer.post(f"/v1/{iid}/v1/chat/completions", json={**valid_chat, "temperature": 0, "n": 1})
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "one two"
    assert answer.json()["model"] == "anything"


def test_an_assistant_turn_with_tool_calls_and_no_content_is_served(simulated: Yard) -> None:
    url = simulated.urls[0]
    manage = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {simulated.key}"}, timeout=60)
    instance = _instance(simulated, manage)
    conversation = [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                              "function": {"name": "lookup", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]  # fmt: skip
    answer = httpx.post(
        f"{instance['openai_base_url']}/chat/completions",
        json={
            "model": "m",
            "messages": conversation,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        headers={"Authorization": f"Bearer {instance['api_key']}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert answer.text.rstrip().endswith("data: [DONE]")


def test_auth_errors_take_each_familys_shape(simulated: Yard) -> None:
    url = simulated.urls[0]
    ask = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    paths = {"/v1/inst_" + "0" * 32 + "/chat": False, "/v1/inst_" + "0" * 32 + "/v1/chat/completions": True,
             "/v1/chat/completions": True, "/v1/provision": False}  # fmt: skip
    for path, openai_shape in paths.items():
        for headers, expected in (
            ({}, (401, "API_KEY_REQUIRED")),
            ({"Authorization": "Bearer auxk_nope"}, (401, "INVALID_API_KEY")),
        ):
            response = httpx.post(url + path, json=ask, headers=headers)
            _check(response, expected, openai=openai_shape, case=f"{path} {headers}")


def _mcp(url: str, key: str, body: bytes) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json",
               "accept": "application/json, text/event-stream"}  # fmt: skip
    return httpx.post(f"{url}/mcp/", content=body, headers=headers, timeout=60)


def test_mcp_tool_arguments_nested_mistyped_and_oversized(simulated: Yard) -> None:
    url = simulated.urls[0]

    def call(name: str, arguments: dict[str, Any]) -> bytes:
        request = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments},
        }
        return _json(request)

    deep = call("provision", {"model": "DEEP"}).replace(b'"DEEP"', DEEP)
    refused = [
        _mcp(url, simulated.key, deep),
        _mcp(url, simulated.key, DEEP),
        _mcp(url, simulated.key, call("provision", {"model": "smollm2-135m", "pad": "x" * LIMIT})),
        _mcp(url, simulated.key, call("provision", {"model": "m" * 9_500_000})),  # over the MCP SDK's 4 MiB
    ]
    for response in refused:
        assert 400 <= response.status_code < 500, response.text[:300]
        assert not LEAK.search(response.text), response.text[:300]
    mistyped = [
        call("scale", {"instance_id": "inst_" + "0" * 32, "capacity": "hot"}),
        call("provision", {"model": "m" * 3_000_000}),
        call("provision", {"model": "smollm2-135m", "capacity": [[[1]]]}),
        call("get_instance", {"instance_id": {"a": [1]}}),
    ]
    for body in mistyped:
        response = _mcp(url, simulated.key, body)
        assert response.status_code == 200, response.text[:300]
        assert response.json()["result"]["isError"] is True
        assert not LEAK.search(response.text), response.text[:300]
    listed = httpx.get(f"{url}/v1/instances", headers={"Authorization": f"Bearer {simulated.key}"})
    assert listed.json()["data"]["count"] == 0


def test_the_openai_sdk_raises_its_typed_errors_with_our_codes(simulated: Yard) -> None:
    url = simulated.urls[0]
    manage = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {simulated.key}"}, timeout=60)
    instance = _instance(simulated, manage)
    sdk = openai.OpenAI(base_url=str(instance["openai_base_url"]), api_key=str(instance["api_key"]))
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], temperature=5)
    assert (refused.value.code, refused.value.param, refused.value.type) == (
        "INVALID_REQUEST",
        "temperature",
        "invalid_request_error",
    )
    stranger = openai.OpenAI(base_url=str(instance["openai_base_url"]), api_key="auxk_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as unknown:
        stranger.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert unknown.value.code == "INVALID_API_KEY"
