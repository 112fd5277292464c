"""Random grants, revokes, member changes and key revocations: access is exactly what a model says.

The system under test is the real write path (the services over an event store), the real
views (folded by the projection runner) and the real checks every route asks (the key
lookup, ``inference_principal`` for inference, ``Checks`` for management and the
organisation's route). After each step every (key, deployment, route) pair is asked, and
the answer must be "allowed" exactly when the reference model below — plain sets, written
from FEATURES C1 to C4, sharing no code with the product's checks — says so.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.adapters.eventlog.sources import NotificationLogSource
from modelyard.adapters.views.db import SqliteViews
from modelyard.api.access.checks import Checks
from modelyard.api.auth import KeyCache, inference_principal
from modelyard.domain.accounts.service import (
    AddCredits,
    AddMember,
    OpenAccount,
    OpenOrganisation,
    RemoveMember,
)
from modelyard.domain.deployments.service import Provision, RequestDeployment
from modelyard.domain.keys.aggregate import KeyKind, hash_secret
from modelyard.domain.keys.service import GrantAccess, IssueKey, RevokeAccess, RevokeKey
from modelyard.domain.services import Services
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import DomainError, ModelyardError
from modelyard.domain.shared.store import Store
from modelyard.projections.registry import all_projections
from modelyard.workers.projection_runner import ProjectionRunner

T0 = datetime(2026, 11, 1, tzinfo=UTC)
PERMISSIONS = ("deployment:invoke", "deployment:manage", "org:admin")
ROUTES = ("infer", "manage", "org_infer")


@dataclass
class Key:
    secret: str
    id: UUID
    account: str
    kind: KeyKind
    deployment: str | None = None


@dataclass
class Model:
    """The reference: who owns what, which grants and members exist, which keys are revoked."""

    owner: dict[str, str]
    keys: dict[str, Key]
    grants: set[tuple[str, str]] = field(default_factory=set)
    members: dict[str, set[str]] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)

    def allowed(self, key_name: str, dep: str, route: str) -> bool:
        key = self.keys[key_name]
        if key_name in self.revoked:
            return False
        if route == "infer":
            if key.kind is KeyKind.INSTANCE:
                return key.deployment == dep
            return key.kind is KeyKind.SCOPED and (key_name, dep) in self.grants
        if key.kind is not KeyKind.MANAGEMENT:
            return False
        if route == "manage":
            return self.owner[dep] == key.account
        return self.owner[dep] == "G" and "deployment:invoke" in self.members.get(key.account, set())


@dataclass
class World:
    services: Services
    runner: ProjectionRunner
    views: SqliteViews
    accounts: dict[str, UUID]
    deployments: dict[str, UUID]
    model: Model
    now: datetime = T0

    def tick(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@contextmanager
def world() -> Iterator[World]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        store = Store(
            env={
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(root / "e.sqlite3"),
                "CREATE_TABLE": "y",
            }
        )
        services = Services.over(store)
        accounts = {
            name: services.accounts.open_account(OpenAccount(name=name, at=T0)).id for name in ("A", "B", "C")
        }
        accounts["G"] = services.accounts.open_organisation(
            OpenOrganisation(name="G", creator_id=accounts["C"], at=T0)
        ).id
        keys: dict[str, Key] = {}
        deployments: dict[str, UUID] = {}
        owner: dict[str, str] = {}
        for account, uuid in accounts.items():
            services.accounts.add_credits(AddCredits(account_id=uuid, amount=10_000_000, at=T0))
            if account != "G":
                secret = f"auxen_live_{account}"
                made = IssueKey(
                    account_id=uuid,
                    kind=KeyKind.MANAGEMENT,
                    secret_hash=hash_secret(secret),
                    display="m",
                    at=T0,
                )
                keys[f"m{account}"] = Key(secret, services.keys.issue(made).id, account, KeyKind.MANAGEMENT)
        for dep, account in (("dA1", "A"), ("dA2", "A"), ("dB1", "B"), ("dG1", "G")):
            secret = f"auxk_{dep}"
            request = RequestDeployment(account_id=accounts[account], model="smollm2-135m", at=T0)
            done = services.deployments.provision(
                Provision(deployment=request, key_hash=hash_secret(secret), key_display="k")
            )
            deployments[dep], owner[dep] = done.id, account
            keys[f"i{dep}"] = Key(secret, done.key_id, account, KeyKind.INSTANCE, dep)
        for name, account in (("sA1", "A"), ("sA2", "A"), ("sB1", "B")):
            secret = f"auxs_{name}"
            made = IssueKey(
                account_id=accounts[account],
                kind=KeyKind.SCOPED,
                secret_hash=hash_secret(secret),
                display="s",
                at=T0,
            )
            keys[name] = Key(secret, services.keys.issue(made).id, account, KeyKind.SCOPED)
        views = SqliteViews(root / "views.sqlite3")
        views.ensure([statement for p in all_projections() for statement in p.schema])
        runner = ProjectionRunner(views, NotificationLogSource(store.recorder), all_projections())
        model = Model(owner=owner, keys=keys, members={"C": set(PERMISSIONS)})
        try:
            yield World(services, runner, views, accounts, deployments, model)
        finally:
            runner.close()
            views.close()
            store.close()


SCOPED = ("sA1", "sA2", "sB1")
ALL_KEYS = ("mA", "mB", "mC", "sA1", "sA2", "sB1", "idA1", "idA2", "idB1", "idG1")
DEPLOYMENTS = ("dA1", "dA2", "dB1", "dG1")
steps = st.lists(
    st.one_of(
        st.tuples(st.just("grant"), st.sampled_from(SCOPED), st.sampled_from(DEPLOYMENTS)),
        st.tuples(st.just("revoke_grant"), st.sampled_from(SCOPED), st.sampled_from(DEPLOYMENTS)),
        st.tuples(
            st.just("add_member"),
            st.sampled_from(("A", "B")),
            st.lists(st.sampled_from(PERMISSIONS), min_size=1, max_size=3, unique=True),
        ),
        st.tuples(st.just("remove_member"), st.sampled_from(("A", "B", "C")), st.just(())),
        st.tuples(st.just("revoke_key"), st.sampled_from(ALL_KEYS), st.just(())),
    ),
    min_size=1,
    max_size=10,
)


def _apply(w: World, step: tuple[object, ...]) -> bool:
    """Run one step on the system; whether it was accepted."""
    name, subject, obj = step
    m = w.model
    try:
        if name == "grant":
            key = m.keys[str(subject)]
            command = GrantAccess(
                key_id=key.id, deployment_id=w.deployments[str(obj)], role="inference", at=w.tick()
            )
            w.services.keys.grant_access(command)
        elif name == "revoke_grant":
            key = m.keys[str(subject)]
            w.services.keys.revoke_access(
                RevokeAccess(key_id=key.id, deployment_id=w.deployments[str(obj)], at=w.tick())
            )
        elif name == "add_member":
            assert isinstance(obj, list)
            command_add = AddMember(
                account_id=w.accounts["G"],
                member_id=w.accounts[str(subject)],
                permissions=tuple(obj),
                at=w.tick(),
            )
            w.services.accounts.add_member(command_add)
        elif name == "remove_member":
            w.services.accounts.remove_member(
                RemoveMember(account_id=w.accounts["G"], member_id=w.accounts[str(subject)], at=w.tick())
            )
        else:
            w.services.keys.revoke(RevokeKey(key_id=m.keys[str(subject)].id, at=w.tick()))
    except DomainError:
        return False
    return True


def _expect(m: Model, step: tuple[object, ...]) -> bool:
    """Whether the model accepts the step; if so, change the model."""
    name, subject, obj = step
    if name == "grant":
        key = m.keys[str(subject)]
        if m.owner[str(obj)] != key.account:
            return False  # another account's deployment: never grantable
        m.grants.add((str(subject), str(obj)))
    elif name == "revoke_grant":
        if (str(subject), str(obj)) not in m.grants:
            return False
        m.grants.discard((str(subject), str(obj)))
    elif name == "add_member":
        if str(subject) in m.members:
            return False
        assert isinstance(obj, list)
        m.members[str(subject)] = set(obj)
    elif name == "remove_member":
        if str(subject) not in m.members:
            return False
        del m.members[str(subject)]
    else:
        if str(subject) in m.revoked:
            return False
        m.revoked.add(str(subject))
    return True


def _allowed(w: World, checks: Checks, keys: KeyCache, *, key_name: str, dep: str, route: str) -> bool:
    """What the product's own checks answer."""
    key = w.model.keys[key_name]
    authorization = f"Bearer {key.secret}"
    deployment = w.deployments[dep]
    try:
        if route == "infer":
            inference_principal(keys, authorization, deployment.hex)
            return True
        principal = keys.lookup(key.secret)
        if principal is None:
            return False
        if route == "manage":
            checks.manage_deployment(principal, ids.deployment_ref(deployment))
        else:
            org = ids.public_id(ids.ACCOUNT, w.accounts["G"])
            checks.in_org_deployment(principal, org, ids.deployment_ref(deployment), "deployment:invoke")
    except ModelyardError:
        return False
    return True


@settings(max_examples=20, deadline=None)
@given(steps)
def test_every_key_deployment_and_route_is_allowed_exactly_when_the_model_says(
    plan: list[tuple[object, ...]],
) -> None:
    with world() as w:
        for step in [("grant", "sA1", "dA1"), *plan]:
            assert _apply(w, step) == _expect(w.model, step), step
            w.runner.run_until_idle()
            checks, keys = Checks(w.views), KeyCache(w.views)  # fresh: no cached answer
            for key_name in ALL_KEYS:
                for dep in DEPLOYMENTS:
                    for route in ROUTES:
                        expected = w.model.allowed(key_name, dep, route)
                        got = _allowed(w, checks, keys, key_name=key_name, dep=dep, route=route)
                        assert got == expected, (step, key_name, dep, route, w.model)
