"""The metrics histograms read percentiles back within their stated bound and merge exactly."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from modelyard.projections.metrics import histogram

latencies = st.lists(st.floats(min_value=0.2, max_value=600_000, allow_nan=False), min_size=1, max_size=300)


def _exact_percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * q / 100)) - 1]


@given(latencies, st.sampled_from([50.0, 95.0, 99.0, 100.0]))
def test_percentile_is_within_one_bucket_above_the_truth(values: list[float], q: float) -> None:
    hist: dict[int, int] = {}
    for value in values:
        hist = histogram.add(hist, value)
    estimate = histogram.percentile(hist, q)
    exact = _exact_percentile(values, q)
    assert estimate is not None
    assert exact <= estimate * (1 + 1e-9)
    assert estimate <= exact * histogram.GROWTH * (1 + 1e-9)


@given(latencies, latencies)
def test_merging_equals_adding_everything_to_one(a: list[float], b: list[float]) -> None:
    left: dict[int, int] = {}
    right: dict[int, int] = {}
    both: dict[int, int] = {}
    for value in a:
        left = histogram.add(left, value)
        both = histogram.add(both, value)
    for value in b:
        right = histogram.add(right, value)
        both = histogram.add(both, value)
    assert histogram.merge(left, right) == both
    assert histogram.loads(histogram.dumps(both)) == both


def test_empty_histogram_has_no_percentile() -> None:
    assert histogram.percentile({}, 99) is None
