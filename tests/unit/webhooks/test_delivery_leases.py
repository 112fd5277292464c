"""Delivery rows in the state store: one live dispatcher at a time sends a delivery.

A second dispatcher (after a rebalance) finds the delivery leased and waits; once the
first records it final, the second sends nothing; if the first died, the lease runs out
and the second takes it. Re-drive hands a dead letter back with no holder.
"""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest

from modelyard.adapters.state import webhooks as stored
from modelyard.adapters.state.db import SCHEMA
from modelyard.adapters.views.db import SqliteViews


@pytest.fixture
def state(tmp_path: Path) -> SqliteViews:
    return SqliteViews(tmp_path / "state.sqlite3", schema=SCHEMA)


def _delivery() -> stored.Delivery:
    return stored.Delivery(
        id=f"msg_7_{uuid4().hex}",
        webhook_id=uuid4(),
        ordering_key="k",
        event="deployment.active",
        notification_id=7,
        body="{}",
        status=stored.PENDING,
        attempts=(),
        created_at=100.0,
        updated_at=100.0,
    )


def test_a_leased_delivery_waits_for_its_holder(state: SqliteViews) -> None:
    delivery = _delivery()
    with state.transaction() as tx:
        assert stored.claim_delivery(tx, delivery, "a", now=100.0, lease_s=10) is not None
        assert stored.claim_delivery(tx, delivery, "b", now=105.0, lease_s=10) is None
        # The holder may take it again (a re-read of its own event).
        assert stored.claim_delivery(tx, delivery, "a", now=105.0, lease_s=10) is not None
        attempt = stored.Attempt(at=105.0, status_code=200, error=None, duration_ms=3)
        done = stored.Delivery(**{**_fields(delivery), "status": stored.DELIVERED, "attempts": (attempt,)})
        stored.save_delivery(tx, done)
        found = stored.claim_delivery(tx, delivery, "b", now=106.0, lease_s=10)
    assert found is not None
    assert found.status == stored.DELIVERED
    assert found.attempts == (attempt,)


def test_a_dead_holders_lease_runs_out(state: SqliteViews) -> None:
    delivery = _delivery()
    with state.transaction() as tx:
        assert stored.claim_delivery(tx, delivery, "a", now=100.0, lease_s=10) is not None
        assert stored.claim_delivery(tx, delivery, "b", now=109.0, lease_s=10) is None
        taken = stored.claim_delivery(tx, delivery, "b", now=111.0, lease_s=10)
    assert taken is not None
    assert taken.status == stored.PENDING


def test_a_redriven_dead_letter_has_no_holder(state: SqliteViews) -> None:
    delivery = _delivery()
    with state.transaction() as tx:
        stored.claim_delivery(tx, delivery, "a", now=100.0, lease_s=10)
        stored.save_delivery(tx, stored.Delivery(**{**_fields(delivery), "status": stored.DEAD}))
        assert stored.redrive(tx, delivery.webhook_id, now=101.0) == 1
        (claimed,) = stored.claim_redriven(tx, now=102.0)
        assert claimed.status == stored.PENDING
        # Whoever claimed the re-drive takes the lease at once: no one holds it.
        assert stored.claim_delivery(tx, claimed, "b", now=102.0, lease_s=10) is not None
        assert stored.deliveries_of(tx, delivery.webhook_id, status=stored.DEAD) == []


def _fields(delivery: stored.Delivery) -> dict[str, object]:
    return {name: getattr(delivery, name) for name in delivery.__struct_fields__}
