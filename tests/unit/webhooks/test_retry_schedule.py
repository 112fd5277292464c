"""The stated retry schedule: its pauses, jittered within 20 %, and how many tries it gives."""

from __future__ import annotations

import pytest

from modelyard.cli.compose import Core, webhook_dispatcher
from modelyard.settings import Settings, SettingsError
from modelyard.workers.webhook_delivery import parse_schedule


def test_the_default_schedule_and_its_jitter() -> None:
    schedule = parse_schedule(Settings().webhook_retry_schedule)
    assert schedule.pauses == (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)
    assert schedule.tries == 7
    for failed, base in enumerate(schedule.pauses, start=1):
        pauses = {schedule.pause(failed) for _ in range(200)}
        assert all(0.8 * base <= p <= 1.2 * base for p in pauses)
        assert len(pauses) > 1  # jittered, so retries of many deliveries do not line up


@pytest.mark.parametrize(("text", "why"), [("a,b", "could not convert"), ("1,-2", "not negative")])
def test_a_bad_schedule_is_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_schedule(text)


def test_an_empty_schedule_is_one_try() -> None:
    assert parse_schedule("").tries == 1


def test_bad_webhook_settings_name_themselves() -> None:
    bad = Settings(webhook_credits_low_usd="lots")
    core = Core(settings=bad, store=None, views=None, state=None, services=None)  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="MODELYARD_WEBHOOK_"):
        webhook_dispatcher(core)
