"""One deployment, one stored form: every view holds its id as ``uuid.hex``, whatever printed it.

Two deployments, one requested through each dialect (``inst_`` and ``dep_``), run, breach an
SLA, get metered and charged, have their own keys and a scoped key's grants, and serve usage
records written in both spellings (the printed ``inst_…`` id older records hold, the hex newer
ones hold). After the views fold it all, each table names each deployment one way only, and
the queries find them by ``UUID`` whichever prefix a client used.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from modelyard.adapters.eventlog.sources import NotificationLogSource
from modelyard.adapters.state import secrets
from modelyard.adapters.state.db import SCHEMA as STATE_SCHEMA
from modelyard.adapters.views.db import SqliteViews
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.deployments.events import SlaMetric
from modelyard.domain.deployments.service import (
    MeterMinute,
    OnDeployment,
    Provision,
    ReplicaCommand,
    RequestDeployment,
    SlaObservation,
)
from modelyard.domain.keys.aggregate import KeyKind, Role
from modelyard.domain.keys.service import GrantAccess, IssueKey
from modelyard.domain.services import Services
from modelyard.domain.shared import ids
from modelyard.domain.shared.store import Store
from modelyard.domain.usage.service import RecordUsage
from modelyard.projections.balances import queries as balances
from modelyard.projections.deployments import queries as deployments
from modelyard.projections.keys import queries as keys
from modelyard.projections.metrics import queries as metrics
from modelyard.projections.registry import all_projections
from modelyard.workers.projection_runner import ProjectionRunner

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
HEX = re.compile(r"[0-9a-f]{32}")


def _history(store: Store) -> tuple[str, list[UUID]]:
    services = Services.over(store)
    account = services.accounts.open_account(OpenAccount(name="both dialects", at=T0)).id
    services.accounts.add_credits(AddCredits(account_id=account, amount=50_000_000, at=T0))
    scoped = services.keys.issue(
        IssueKey(account_id=account, kind=KeyKind.SCOPED, secret_hash="h-scoped", display="s", at=T0)
    ).id
    made = []
    for n, prefix in enumerate((ids.INSTANCE, ids.DEPLOYMENT)):
        request = RequestDeployment(account_id=account, model="smollm2-135m", prefix=prefix, at=T0)
        dep = services.deployments.provision(
            Provision(deployment=request, key_hash=f"h-{n}", key_display=f"k{n}")
        ).id
        started = T0 + timedelta(seconds=5)
        services.deployments.start_replica(
            ReplicaCommand(deployment_id=dep, replica=f"{dep.hex}-r1", base_url=f"http://r{n}", at=started)
        )
        services.deployments.activate(OnDeployment(deployment_id=dep, at=T0 + timedelta(seconds=6)))
        breach = SlaObservation(
            deployment_id=dep,
            metric=SlaMetric.TTFT_MS,
            value=900.0,
            target=500.0,
            at=T0 + timedelta(seconds=30),
        )
        services.deployments.record_sla_breach(breach)
        services.deployments.meter(MeterMinute(deployment_id=dep, minute=T0, at=T0 + timedelta(minutes=2)))
        services.keys.grant_access(
            GrantAccess(key_id=scoped, deployment_id=dep, role=Role.INFERENCE, at=T0 + timedelta(minutes=2))
        )
        for spelling in (ids.instance_ref(dep), ids.deployment_ref(dep), dep.hex):
            services.usage.record(
                [
                    RecordUsage(
                        record_id=uuid4(),
                        at=T0 + timedelta(seconds=40),
                        deployment_id=spelling,
                        model="smollm2-135m",
                        account_id=ids.public_id(ids.ACCOUNT, account),
                        completion_tokens=3,
                    )
                ]
            )
        made.append(dep)
    return ids.public_id(ids.ACCOUNT, account), made


def test_every_view_stores_a_deployment_as_its_hex(sqlite_store: Store, tmp_path: Path) -> None:
    store = sqlite_store
    account, made = _history(store)
    views = SqliteViews(tmp_path / "views.sqlite3")
    state = SqliteViews(tmp_path / "state.sqlite3", schema=STATE_SCHEMA)
    ProjectionRunner(views, NotificationLogSource(store.recorder), all_projections()).run_until_idle()
    with state.transaction() as tx:
        for dep in made:
            secrets.keep(tx, dep, f"auxk_{dep.hex[:6]}")
        kept = secrets.stored_ids(tx)
    expected = {dep.hex for dep in made}
    with views.read() as tx:
        stored = {
            **deployments.stored_ids(tx),
            **keys.stored_ids(tx),
            "ledger": balances.charged_deployments(tx),
            "metrics_minute": metrics.stored_ids(tx),
        }
        stored["instance_secrets"] = kept
        for table, found in stored.items():
            assert found == expected, table
            assert all(HEX.fullmatch(dep) for dep in found), table
        # Either printed form finds the one row, through every query that takes a deployment.
        for dep in made:
            for printed in (ids.instance_ref(dep), ids.deployment_ref(dep)):
                parsed = ids.parse_deployment_id(printed)
                row = deployments.instance_for_account(tx, account, parsed)
                assert row is not None
                assert row.id == dep
                routes = deployments.serving_replicas(tx, parsed)
                assert [r.base_url for r in routes] == [f"http://r{made.index(dep)}"]
                assert keys.instance_key_hint(tx, parsed) == f"k{made.index(dep)}"
            # Three records in three spellings, one row: 3 requests, 9 completion tokens.
            assert metrics.requests_of_deployment(tx, dep) == (3, 9, 0)
        charged = balances.charges_by_deployment(tx, account)
        assert sorted(c.deployment_id for c in charged) == sorted(made)
        assert {r.prefix for r in deployments.instances_of_account(tx, account)} == {"inst_", "dep_"}
    views.close()
    state.close()
