"""Rebuilding every view leaves the state store alone: idempotency records and unseen secrets.

A real ``modelyard serve`` provisions with an ``Idempotency-Key`` and runs the instance, its
key not yet used. The server stops; every view is rebuilt (``ProjectionRunner.rebuild`` over
all projections, then the views' tables dropped outright, then a replay from the first
event); the server starts again. The retried provision is answered from its record, creating
nothing, and the instance still shows its unseen key: neither lived in what was rebuilt.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.adapters.eventlog.sources import NotificationLogSource
from modelyard.adapters.eventstore.env import open_store
from modelyard.adapters.views.db import SqliteViews, open_views
from modelyard.projections.deployments.queries import instances_of_account
from modelyard.projections.registry import all_projections
from modelyard.settings import load_settings
from modelyard.workers.projection_runner import ProjectionRunner

from .conftest import Yard, free_port
from .test_five_steps import poll_until

pytestmark = pytest.mark.e2e
PROVISION = {"model": "smollm2-135m", "capacity": 1}


@pytest.fixture(params=["sqlite", "postgres"])
def yard(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Yard]:
    """``modelyard serve`` (simulated engine) on SQLite, or on a PostgreSQL database of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "POSTGRES_"))}
    env |= {"MODELYARD_DATA_DIR": str(tmp_path / "data"), "MODELYARD_ENGINE": "simulated"}
    if request.param == "postgres":
        dsn: str = request.getfixturevalue("pg_dsn")
        conninfo = dict(part.split("=", 1) for part in dsn.split())
        env |= request.getfixturevalue("local_postgres").env() | {"POSTGRES_DBNAME": conninfo["dbname"]}
    running = Yard(env=env, cwd=tmp_path, urls=[])
    running.fund("5.00")
    running.start("serve", port=free_port())
    yield running
    running.stop()


def _rebuild_every_view(yard: Yard) -> None:
    """Empty every projection and drop the views' tables, then replay the whole history."""
    settings = load_settings(yard.env)
    store = open_store(settings)
    views = open_views(settings)
    try:
        ProjectionRunner(views, NotificationLogSource(store.recorder), all_projections()).rebuild()
        with views.read() as tx:
            assert instances_of_account(tx, yard.account) == []  # the views really are empty
        if isinstance(views, SqliteViews):
            views.close()
            for leftover in settings.data_dir.glob("views.sqlite3*"):
                leftover.unlink()
        else:
            with views.transaction() as tx:
                for table in [t for p in all_projections() for t in p.tables] + ["projection_tracking"]:
                    tx.execute(f"DROP TABLE {table}")
            views.close()
        views = open_views(settings)
        ProjectionRunner(views, NotificationLogSource(store.recorder), all_projections()).run_until_idle()
    finally:
        views.close()
        store.close()


def test_a_rebuild_keeps_idempotency_records_and_unseen_secrets(yard: Yard) -> None:
    headers = {"Authorization": f"Bearer {yard.key}", "Idempotency-Key": "before-the-rebuild"}
    with httpx.Client(base_url=yard.urls[0], headers=headers, timeout=60) as client:
        yard.await_key()
        first = client.post("/v1/provision", json=PROVISION)
        assert first.status_code == 201, first.text
        instance_id = first.json()["data"]["instance"]["id"]
        secret = poll_until(client, instance_id, "running")["api_key"]
        assert secret, "a running instance shows its unseen key"
    yard.stop()
    yard.procs.clear()

    _rebuild_every_view(yard)

    url = yard.start("serve", port=free_port())
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        again = client.post("/v1/provision", json=PROVISION)
        assert again.status_code == 201, again.text
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert again.json()["data"]["instance"]["id"] == instance_id
        assert client.get("/v1/instances").json()["data"]["count"] == 1
        shown = poll_until(client, instance_id, "running")
        assert shown["api_key"] == secret
