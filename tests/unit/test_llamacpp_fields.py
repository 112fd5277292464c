"""What llama.cpp's ChatML handler is handed: every message rendered, nothing dropped."""

from __future__ import annotations

import pytest

from modelyard.adapters.engines.backends import Refused
from modelyard.adapters.engines.llamacpp_fields import engine_messages, refuse_logprobs, response_grammar


def test_a_tool_round_trip_keeps_the_call_and_the_answer() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
    messages = engine_messages(
        [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "time?"}]},
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "14:05"},
        ]
    )
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "time?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "user", "content": "get_time returned:\n14:05"},
    ]


def test_what_the_engine_cannot_serve_is_refused() -> None:
    with pytest.raises(Refused, match="text only"):
        engine_messages([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])
    with pytest.raises(Refused, match="logprobs"):
        refuse_logprobs({"logprobs": True})
    refuse_logprobs({"logprobs": False})
    assert response_grammar({}) is None
    assert response_grammar({"response_format": {"type": "text"}}) is None
