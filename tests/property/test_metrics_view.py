"""The metrics view folded from random usage records: batch boundaries change nothing."""

from __future__ import annotations

import itertools
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.adapters.views.db import SqliteViews
from modelyard.domain.shared import ids
from modelyard.domain.usage.events import UsageRecorded
from modelyard.domain.usage.service import RecordUsage, usage_recorded
from modelyard.projections.metrics import histogram
from modelyard.projections.metrics.projection import MetricsProjection, minute_key

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
A, B = UUID(int=0xA), UUID(int=0xB)
# Records written before one stored form carry the printed ``inst_`` id; newer ones the hex.
SPELLINGS = ["inst_" + A.hex, A.hex, "inst_" + B.hex, B.hex]

records = st.lists(
    st.tuples(
        st.sampled_from(SPELLINGS),
        st.integers(0, 200),
        st.integers(0, 500),
        st.integers(0, 500),
        st.floats(0.01, 60_000),
        st.none() | st.floats(0.01, 10_000),
        st.sampled_from([200, 200, 200, 400, 500]),
    ),
    max_size=60,
)


def _record(index: int, fields: tuple[Any, ...]) -> UsageRecorded:
    dep, second, prompt, completion, latency, ttft, status = fields
    return usage_recorded(
        RecordUsage(
            record_id=UUID(int=index + 1),
            at=T0 + timedelta(seconds=second),
            deployment_id=dep,
            model="smollm2-135m",
            account_id="acct_x",
            prompt_tokens=prompt,
            completion_tokens=completion,
            latency_ms=latency,
            ttft_ms=ttft,
            status=status,
        )
    )


def _fold(folder: Path, events: list[UsageRecorded], cuts: list[int]) -> list[tuple[Any, ...]]:
    views = SqliteViews(folder / f"views-{uuid4().hex}.sqlite3")
    views.ensure(MetricsProjection.schema)
    projection = MetricsProjection()
    positioned = [(event, i + 1) for i, event in enumerate(events)]
    bounds = [0, *sorted(set(cuts)), len(positioned)]
    for start, end in itertools.pairwise(bounds):
        with views.transaction() as tx:
            projection.apply_batch(tx, positioned[start:end])
    with views.transaction() as tx:
        rows = tx.execute("SELECT * FROM metrics_minute ORDER BY deployment_id, minute")
    views.close()
    return rows


@settings(max_examples=40, deadline=None)
@given(records, st.lists(st.integers(0, 60), max_size=6))
def test_any_batching_gives_the_rows_one_by_one_gives(fields: list[tuple[Any, ...]], cuts: list[int]) -> None:
    events = [_record(i, f) for i, f in enumerate(fields)]
    cuts = [c for c in cuts if c <= len(events)]
    with tempfile.TemporaryDirectory() as folder:
        one_by_one = _fold(Path(folder), events, list(range(len(events))))
        batched = _fold(Path(folder), events, cuts)
    assert batched == one_by_one
    # And the rows say what the records say: counts, tokens and histogram totals per minute.
    for dep, _, minute, _, requests, errors, prompt, completion, latency, ttft in batched:
        assert dep in {A.hex, B.hex}  # one stored form, whichever spelling the record held
        mine = [
            e
            for e in events
            if ids.deployment_uuid(e.deployment_id).hex == dep and minute_key(e.timestamp) == minute
        ]
        assert requests == len(mine) == sum(histogram.loads(latency).values())
        assert errors == sum(e.is_error for e in mine)
        assert (prompt, completion) == (
            sum(e.prompt_tokens for e in mine),
            sum(e.completion_tokens for e in mine),
        )
        assert sum(histogram.loads(ttft).values()) == sum(e.ttft_ms is not None for e in mine)
    assert sum(row[4] for row in batched) == len(events)
