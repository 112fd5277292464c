"""The replica choice the gateway and the balancer share."""

from __future__ import annotations

from modelyard.adapters.placement.balancer import least_loaded


def test_the_least_loaded_wins_whatever_the_turn() -> None:
    load = {"a": 3, "b": 0, "c": 2}
    assert {least_loaded(["a", "b", "c"], turn, load.__getitem__) for turn in range(6)} == {"b"}


def test_equals_take_turns() -> None:
    picks = [least_loaded(["a", "b", "c"], turn, lambda _: 0) for turn in range(6)]
    assert picks == ["a", "b", "c", "a", "b", "c"]


def test_ties_rotate_only_among_the_least_loaded() -> None:
    load = {"a": 1, "b": 0, "c": 0}
    picks = [least_loaded(["a", "b", "c"], turn, load.__getitem__) for turn in range(3)]
    assert picks == ["b", "b", "c"]
