"""The control loops' settings: documented defaults, and nonsense refused with the variable named."""

from __future__ import annotations

import pytest

from modelyard.settings import ENVIRONMENT, SettingsError, load_settings


def test_the_defaults_are_the_documented_ones() -> None:
    settings = load_settings({})
    assert settings.autoscale_interval_s == 30.0  # "the autoscaler polls every 30 s"
    assert settings.sla_window_s == 60.0
    assert settings.cold_start_wait_s == 120.0
    for name in ("MODELYARD_AUTOSCALE_INTERVAL_S", "MODELYARD_SLA_WINDOW_S", "MODELYARD_COLD_START_WAIT_S"):
        assert ENVIRONMENT[name][1]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MODELYARD_AUTOSCALE_INTERVAL_S", "0"),
        ("MODELYARD_AUTOSCALE_INTERVAL_S", "-5"),
        ("MODELYARD_AUTOSCALE_TARGET_CONCURRENCY", "0"),
        ("MODELYARD_AUTOSCALE_DOWN_WINDOW_S", "-1"),
        ("MODELYARD_SLA_WINDOW_S", "0"),
        ("MODELYARD_COLD_START_WAIT_S", "-1"),
        ("MODELYARD_COLD_START_WAIT_S", "soon"),
    ],
)
def test_a_value_no_loop_can_run_on_is_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


def test_no_hold_at_all_is_a_valid_choice() -> None:
    assert load_settings({"MODELYARD_COLD_START_WAIT_S": "0"}).cold_start_wait_s == 0.0
