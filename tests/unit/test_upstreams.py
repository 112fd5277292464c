"""Upstream providers: the operator's list parsed, keys kept out of reprs and errors, costs exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.adapters.engines.upstream import Upstream, operator_upstreams
from modelyard.cli.compose import build_api, opened_core
from modelyard.settings import SettingsError, load_settings


def test_the_operators_upstreams_parse_and_never_show_their_keys() -> None:
    text = (
        '[{"name": "a", "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-very-secret",'
        ' "models": ["gpt-4o"],'
        ' "input_price_micros_per_mtok": 150000, "output_price_micros_per_mtok": 600000},'
        ' {"name": "b", "base_url": "https://example.test/v1"}]'
    )
    first, second = operator_upstreams(text)
    assert first.serves("gpt-4o")
    assert not first.serves("other")
    assert second.serves("anything")
    assert "sk-very-secret" not in repr(first)
    assert first.key_hint == "sk-ver…"
    # 3 prompt and 2 completion tokens: 3*0.15 + 2*0.6 micro-dollars = 1.65, rounded up.
    assert first.cost_micros({"prompt_tokens": 3, "completion_tokens": 2}) == 2
    assert first.cost_micros({}) == 0
    assert operator_upstreams("  ") == []


@pytest.mark.parametrize(
    "text",
    [
        "not json sk-very-secret",
        '[{"name": "a", "base_url": "ftp://x", "api_key": "sk-very-secret"}]',
        '[{"name": "a", "base_url": "http://x/v1"}, {"name": "a", "base_url": "http://y/v1"}]',
        '[{"name": "a", "base_url": "http://x/v1", "models": []}]',
    ],
)
def test_a_bad_list_is_refused_without_echoing_it(text: str) -> None:
    with pytest.raises(ValueError, match="MODELYARD_UPSTREAMS") as refused:
        operator_upstreams(text)
    assert "sk-very-secret" not in str(refused.value)


def test_an_upstream_takes_only_http_urls() -> None:
    assert Upstream(name="x", base_url="http://127.0.0.1:1/v1").models == ("*",)


def test_a_bad_operator_list_stops_the_api_with_a_settings_error(tmp_path: Path) -> None:
    settings = load_settings(
        {"MODELYARD_DATA_DIR": str(tmp_path), "MODELYARD_UPSTREAMS": "[{} sk-very-secret"}
    )
    assert "sk-very-secret" not in repr(settings)
    with opened_core(settings) as core, pytest.raises(SettingsError, match="MODELYARD_UPSTREAMS") as refused:
        build_api(core)
    assert "sk-very-secret" not in str(refused.value)
