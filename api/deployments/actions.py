"""The second dialect's deployment use cases: create, list, show, delete, scaling, SLA.

Each takes the authenticated principal, maps the request to a typed command, calls the
deployments service, waits until the views show the effect (read-your-writes) and answers
from the views. Create and delete honour ``Idempotency-Key`` as the first dialect does: a
retry returns the first answer (the inference key left out once it was seen) and changes
nothing. Both dialects read the same deployments: an ``inst_`` id is accepted here too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

import msgspec

from modelyard.adapters.keygen import INSTANCE_PREFIX, new_secret
from modelyard.adapters.state import secrets
from modelyard.adapters.views.db import ViewDatabase
from modelyard.adapters.views.follow import POLL_S, SETTLE_TIMEOUT_S, ViewsFollower
from modelyard.api import idempotency
from modelyard.api.auth import Principal
from modelyard.api.deployments import presenters, schemas
from modelyard.api.provisioning import provision_claimed
from modelyard.domain.billing.pricing import check_capacity
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.service import (
    OnDeployment,
    Provisioned,
    RequestDeployment,
    SetAutoscaling,
    SetSla,
)
from modelyard.domain.services import Services
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import InstanceNotFound
from modelyard.projections.deployments.public import (
    PublicDeployment,
    deployment_of_account,
    deployments_of_account,
    sla_history,
)
from modelyard.projections.deployments.queries import deployment_version
from modelyard.projections.keys.queries import instance_key_hint


def _now() -> datetime:
    return datetime.now(UTC)


def _without_key(answer: schemas.Deployment) -> schemas.Deployment:
    """The answer as an idempotency record keeps it: the inference key left out."""
    return msgspec.structs.replace(answer, api_key=None)


def _given(patch: msgspec.Struct, current: msgspec.Struct) -> dict[str, object]:
    """The fields ``patch`` sets, over ``current``'s."""
    fields = msgspec.structs.asdict(current)
    fields.update({k: v for k, v in msgspec.structs.asdict(patch).items() if v is not msgspec.UNSET})
    return fields


class Deployments:
    """Create, list, show and delete deployments; read and set their scaling and SLA."""

    def __init__(
        self,
        services: Services,
        views: ViewDatabase,
        state: ViewDatabase,
        follower: ViewsFollower,
        *,
        base_url: str,
        engine_of: presenters.EngineOf,
    ) -> None:
        self._services, self._views, self._state = services, views, state
        self._follower, self._base_url, self._engine_of = follower, base_url, engine_of

    # --- reads -------------------------------------------------------------------------

    def _row(self, principal: Principal, deployment_id: str) -> PublicDeployment:
        deployment = ids.parse_deployment_id(deployment_id)
        with self._views.read() as tx:
            row = deployment_of_account(tx, principal.account_id, deployment)
        if row is None:
            raise InstanceNotFound(f"No deployment {deployment_id} on this account.")
        return row

    def show(self, principal: Principal, deployment_id: str) -> schemas.Deployment:
        """One deployment of the account, ended ones included (``inactive``)."""
        row = self._row(principal, deployment_id)
        with self._views.read() as tx:
            hint = instance_key_hint(tx, row.id)
        with self._state.read() as tx:
            secret = secrets.peek(tx, row.id)
        return presenters.deployment(row, self._base_url, self._engine_of, secret, hint)

    def list(self, principal: Principal) -> schemas.DeploymentList:
        """Every deployment of the account, oldest first."""
        with self._views.read() as tx:
            rows = deployments_of_account(tx, principal.account_id)
        shown = [presenters.deployment(r, self._base_url, self._engine_of, None, None) for r in rows]
        return schemas.DeploymentList(object="list", deployments=shown, total=len(shown))

    def owns(self, principal: Principal, deployment: UUID) -> bool:
        """Whether the deployment is the caller's account's."""
        with self._views.read() as tx:
            return deployment_of_account(tx, principal.account_id, deployment) is not None

    def scaling(self, principal: Principal, deployment_id: str) -> schemas.ScalingAnswer:
        """The autoscaling policy and the replicas now."""
        return presenters.scaling_answer(self._row(principal, deployment_id))

    def sla(self, principal: Principal, deployment_id: str) -> schemas.SlaAnswer:
        """The SLA targets and the breach history."""
        row = self._row(principal, deployment_id)
        with self._views.read() as tx:
            history = sla_history(tx, row.id)
        return presenters.sla_answer(row, history)

    # --- commands ----------------------------------------------------------------------

    def _settled(self, principal: Principal, deployment: UUID, position: int) -> schemas.Deployment:
        self._follower.settle(deployment, position)
        return self.show(principal, ids.deployment_ref(deployment))

    def _once(
        self,
        principal: Principal,
        key: str | None,
        request: bytes,
        status: int,
        run: Callable[[UUID], schemas.Deployment],
    ) -> idempotency.Outcome:
        outcome = idempotency.run_once(
            self._state,
            account_id=principal.account_id,
            key=key,
            request=request,
            status=status,
            command=run,
            stored=_without_key,
        )
        return self._with_unseen_key(outcome) if outcome.replayed else outcome

    def _with_unseen_key(self, outcome: idempotency.Outcome) -> idempotency.Outcome:
        """A replayed answer, its key shown again only while it is still unseen."""
        answer = msgspec.json.decode(outcome.body, type=schemas.Deployment)
        with self._state.read() as tx:
            secret = secrets.peek(tx, ids.parse_deployment_id(answer.id))
        shown = msgspec.structs.replace(answer, api_key=secret if answer.endpoint else None)
        return idempotency.Outcome(status=outcome.status, body=msgspec.json.encode(shown), replayed=True)

    def _made_before(self, principal: Principal, deployment: UUID) -> schemas.Deployment | None:
        """The deployment an earlier attempt under the same claim recorded, or None."""
        try:
            self._services.deployments.get(deployment)
        except InstanceNotFound:
            return None
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while time.monotonic() < deadline:
            with self._views.read() as tx:
                if deployment_version(tx, deployment) is not None:
                    break
            time.sleep(POLL_S)
        return self.show(principal, ids.deployment_ref(deployment))

    def create(
        self, principal: Principal, request: schemas.CreateDeployment, key: str | None
    ) -> idempotency.Outcome:
        """Create a deployment and its inference key; answers at once, ``provisioning``.

        A deployment this cluster cannot place is refused now (PROVISIONING_FAILED), with
        nothing recorded. The new id is the idempotency claim's, so a retry after a crash
        finds what the first attempt made.
        """

        def run(claim: UUID) -> schemas.Deployment:
            return self._made_before(principal, claim) or self._create_as(principal, request, claim)

        return self._once(principal, key, idempotency.fingerprint("create", request), 201, run)

    def _create_as(
        self, principal: Principal, request: schemas.CreateDeployment, claim: UUID
    ) -> schemas.Deployment:
        with self._state.transaction() as tx:
            # Kept before the events are recorded, so no deployment exists whose key was lost.
            secret = secrets.hold(tx, claim, new_secret(INSTANCE_PREFIX)[0])
        command = RequestDeployment(
            account_id=ids.parse_id(principal.account_id, ids.ACCOUNT),
            model=request.model_id,
            capacity=check_capacity(request.replicas),
            tier=request.tier,
            name=request.name,
            gpu_type=request.gpu_type,
            region=request.region,
            preset=request.preset,
            prefix=ids.DEPLOYMENT,
            deployment_id=claim,
            at=_now(),
        )
        done = provision_claimed(
            self._services, self._state, command, secret, lambda: self._made_before(principal, claim)
        )
        if not isinstance(done, Provisioned):
            return done
        return self._settled(principal, done.id, done.position)

    def delete(self, principal: Principal, deployment_id: str, key: str | None) -> idempotency.Outcome:
        """Tear down: billing stops now and the minutes owed are charged in the same step, so
        the balance read right after is final; the replicas stop in the background."""

        def run(_: UUID) -> schemas.Deployment:
            row = self._row(principal, deployment_id)
            position = self._services.deployments.request_teardown(
                OnDeployment(deployment_id=row.id, at=_now())
            )
            with self._state.transaction() as tx:
                secrets.forget(tx, row.id)
            # The charges are the account's events: wait for its views too (its own partition).
            self._follower.settle(ids.parse_id(principal.account_id, ids.ACCOUNT), position)
            return self._settled(principal, row.id, position)

        return self._once(principal, key, idempotency.fingerprint("delete", deployment_id), 200, run)

    def set_scaling(
        self, principal: Principal, deployment_id: str, patch: schemas.ScalingPatch
    ) -> schemas.ScalingAnswer:
        """Replace the fields of the autoscaling policy that ``patch`` sends."""
        row = self._row(principal, deployment_id)
        current = self._services.deployments.get(row.id).autoscaling
        policy = msgspec.convert(_given(patch, current), ev.Autoscaling)
        position = self._services.deployments.set_autoscaling(
            SetAutoscaling(deployment_id=row.id, policy=policy, at=_now())
        )
        self._follower.settle(row.id, position)
        return self.scaling(principal, deployment_id)

    def set_sla(self, principal: Principal, deployment_id: str, patch: schemas.SlaPatch) -> schemas.SlaAnswer:
        """Replace the SLA targets that ``patch`` sends."""
        row = self._row(principal, deployment_id)
        current = self._services.deployments.get(row.id).sla
        targets = msgspec.convert(_given(patch, current), ev.SlaTargets)
        position = self._services.deployments.set_sla(
            SetSla(deployment_id=row.id, targets=targets, at=_now())
        )
        self._follower.settle(row.id, position)
        return self.sla(principal, deployment_id)
