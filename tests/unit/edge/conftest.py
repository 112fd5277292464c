"""One API process over a fresh embedded store, its views kept current, and a funded account.

The API is the composition root's (``build_api``) behind Litestar's test client; the views
worker runs beside it as in ``modelyard serve``. No replica is started: a test that needs a
running instance reports a replica the way the reconciler would (``bring_up``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest
from litestar.testing import TestClient

from modelyard.adapters.keygen import MANAGEMENT_PREFIX, new_secret
from modelyard.cli.compose import Core, build_api, build_workers, opened_core, running
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.deployments.service import OnDeployment, ReplicaCommand
from modelyard.domain.keys.aggregate import KeyKind
from modelyard.domain.keys.service import IssueKey
from modelyard.projections.deployments.queries import deployment_state
from modelyard.settings import load_settings


@dataclass
class Edge:
    """The API under test, what it runs over, and a management key of a funded account."""

    client: TestClient[object]
    core: Core
    account: UUID
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def wait_for(self, deployment: UUID, state: str, timeout: float = 10) -> None:
        """Until the views show the deployment in ``state``."""
        deadline = time.monotonic() + timeout
        while True:
            with self.core.views.read() as tx:
                found = deployment_state(tx, deployment)
            if found is not None and found.state == state:
                return
            assert time.monotonic() < deadline, f"{deployment} never reached {state}: {found}"
            time.sleep(0.02)

    def bring_up(self, deployment: UUID) -> None:
        """What the reconciler does once a replica answers: report it, then activate."""
        now = datetime.now(UTC)
        deployments = self.core.services.deployments
        replica = ReplicaCommand(
            deployment_id=deployment, replica="r1", base_url="http://127.0.0.1:9", at=now
        )
        deployments.start_replica(replica)
        deployments.activate(OnDeployment(deployment_id=deployment, at=now))
        self.wait_for(deployment, "running")


def fund(core: Core, micros: int) -> tuple[UUID, str]:
    """A new account with ``micros`` of credit and a management key (its secret)."""
    now = datetime.now(UTC)
    services = core.services
    account = services.accounts.open_account(OpenAccount(name="edge", plan="free", at=now)).id
    services.accounts.add_credits(AddCredits(account_id=account, amount=micros, at=now))
    secret, digest, display = new_secret(MANAGEMENT_PREFIX)
    services.keys.issue(
        IssueKey(account_id=account, kind=KeyKind.MANAGEMENT, secret_hash=digest, display=display, at=now)
    )
    return account, secret


EdgeFactory = Callable[..., Edge]


@pytest.fixture
def make_edge(tmp_path: Path) -> Iterator[EdgeFactory]:
    """Builds the edge with settings of the test's choosing (once per test)."""
    with ExitStack() as stack:

        def make(**env: str) -> Edge:
            settings = load_settings({"MODELYARD_DATA_DIR": str(tmp_path / "data"), **env})
            core = stack.enter_context(opened_core(settings))
            stack.enter_context(running(build_workers(core, ["views"])))
            account, key = fund(core, 5_000_000)
            client = stack.enter_context(TestClient(build_api(core)))
            edge = Edge(client=client, core=core, account=account, key=key)
            deadline = time.monotonic() + 10
            while edge.client.get("/v1/balance", headers=edge.auth).status_code == 401:
                assert time.monotonic() < deadline, "the key never reached the views"
                time.sleep(0.05)
            return edge

        yield make


@pytest.fixture
def edge(make_edge: EdgeFactory) -> Edge:
    """The edge with default settings."""
    return make_edge()
