"""The first dialect's management use cases, shared by its REST routes and the MCP tools.

Each takes the authenticated principal, maps the request to a typed command, calls one
application service, waits until the views show the command's effect (read-your-writes),
and answers with a typed response Struct read from the views.

Idempotent commands keep their answer for retries *without* the instance's key: a replay
shows the key only if it is still unseen, exactly as a fresh GET would, so a key never
outlives its one showing in an idempotency record.
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
from modelyard.api.instances import presenters
from modelyard.api.instances.schemas import (
    BalanceAnswer,
    BalanceData,
    InstanceAnswer,
    InstanceData,
    InstanceList,
    InstanceListAnswer,
    ModelList,
    ModelListAnswer,
    ProvisionRequest,
    ScaleRequest,
    UsageAnswer,
    UsageData,
    UsageRow,
)
from modelyard.api.provisioning import provision_claimed
from modelyard.api.uploads.actions import byom_upload
from modelyard.domain.billing.pricing import check_capacity
from modelyard.domain.catalog.models import CATALOG
from modelyard.domain.deployments.service import OnDeployment, Provisioned, RequestDeployment, WithCapacity
from modelyard.domain.services import Services
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import InstanceNotFound
from modelyard.domain.shared.money import format_usd
from modelyard.projections.balances.queries import Balance, balance_of, charges_by_deployment
from modelyard.projections.deployments.queries import (
    deployment_version,
    instance_for_account,
    instances_of_account,
)
from modelyard.projections.keys.queries import instance_key_hint


def _now() -> datetime:
    return datetime.now(UTC)


def _without_key(answer: InstanceAnswer) -> InstanceAnswer:
    """The answer as an idempotency record keeps it: the instance key left out."""
    instance = msgspec.structs.replace(answer.data.instance, api_key=None)
    return InstanceAnswer(data=InstanceData(instance=instance))


class Instances:
    """Provision, poll, list, scale and destroy instances; the catalog, balance and usage."""

    def __init__(
        self,
        services: Services,
        views: ViewDatabase,
        state: ViewDatabase,
        follower: ViewsFollower,
        base_url: str,
    ) -> None:
        self._services, self._views, self._state = services, views, state
        self._follower, self._base_url = follower, base_url

    # --- reads -------------------------------------------------------------------------

    def show(self, principal: Principal, instance_id: str) -> InstanceAnswer:
        """One instance of the account; once running it carries its endpoint and key."""
        deployment = ids.parse_deployment_id(instance_id)
        with self._views.read() as tx:
            row = instance_for_account(tx, principal.account_id, deployment)
            if row is None or row.state == "destroyed":
                raise InstanceNotFound(f"No instance {instance_id} on this account (or it was destroyed).")
            hint = instance_key_hint(tx, deployment)
        with self._state.read() as tx:
            secret = secrets.peek(tx, deployment)
        instance = presenters.instance(row, self._base_url, secret, hint)
        return InstanceAnswer(data=InstanceData(instance=instance))

    def list(self, principal: Principal) -> InstanceListAnswer:
        """Every instance of the account that is not destroyed."""
        with self._views.read() as tx:
            rows = [r for r in instances_of_account(tx, principal.account_id) if r.state != "destroyed"]
        shown = [presenters.instance(r, self._base_url, None, None) for r in rows]
        return InstanceListAnswer(data=InstanceList(instances=shown, count=len(shown)))

    def models(self) -> ModelListAnswer:
        """The catalog with prices per hour at 1x."""
        return ModelListAnswer(data=ModelList(models=[presenters.model(m) for m in CATALOG if m.active]))

    def balance(self, principal: Principal) -> BalanceAnswer:
        """The account's prepaid balance."""
        with self._views.read() as tx:
            found = balance_of(tx, principal.account_id)
        row = found or Balance(plan="free", balance=0, credited=0, charged=0)
        return BalanceAnswer(
            data=BalanceData(
                account_id=principal.account_id,
                plan=row.plan,
                balance_usd=format_usd(row.balance),
                balance_micros=row.balance,
                credited_usd=format_usd(row.credited),
                charged_usd=format_usd(row.charged),
                reserved_usd=format_usd(row.reserved),
                available_usd=format_usd(row.available),
            )
        )

    def usage(self, principal: Principal) -> UsageAnswer:
        """Charges per instance: minutes metered and what they cost."""
        with self._views.read() as tx:
            rows = charges_by_deployment(tx, principal.account_id)
        per = [
            UsageRow(instance_uuid=str(r.deployment_id), minutes=r.minutes, charged_usd=format_usd(r.amount))
            for r in rows
        ]
        total = sum(r.amount for r in rows)
        return UsageAnswer(
            data=UsageData(account_id=principal.account_id, instances=per, charged_usd=format_usd(total))
        )

    # --- commands ----------------------------------------------------------------------

    def _owned(self, principal: Principal, instance_id: str) -> UUID:
        """The deployment if it belongs to the account and is not destroyed; else INSTANCE_NOT_FOUND."""
        deployment = ids.parse_deployment_id(instance_id)
        with self._views.read() as tx:
            row = instance_for_account(tx, principal.account_id, deployment)
        if row is None or row.state == "destroyed":
            raise InstanceNotFound(f"No instance {instance_id} on this account (or it was destroyed).")
        return deployment

    def _once(
        self,
        principal: Principal,
        key: str | None,
        request: bytes,
        status: int,
        run: Callable[[UUID], InstanceAnswer],
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
        """A replayed answer, its instance's key shown again only while it is still unseen.

        The first answer showed the key if the instance was serving (it has an endpoint); a
        replay does the same with the key the secrets store still holds, which is none once
        the key was used or the instance ended.
        """
        answer = msgspec.json.decode(outcome.body, type=InstanceAnswer)
        instance = answer.data.instance
        with self._state.read() as tx:
            secret = secrets.peek(tx, ids.parse_deployment_id(instance.id))
        shown = msgspec.structs.replace(instance, api_key=secret if instance.endpoint else None)
        body = msgspec.json.encode(InstanceAnswer(data=InstanceData(instance=shown)))
        return idempotency.Outcome(status=outcome.status, body=body, replayed=True)

    def _settled(self, principal: Principal, deployment: UUID, position: int) -> InstanceAnswer:
        self._follower.settle(deployment, position)
        return self.show(principal, ids.instance_ref(deployment))

    def _made_before(self, principal: Principal, deployment: UUID) -> InstanceAnswer | None:
        """The deployment an earlier attempt under the same claim recorded, or None if none did."""
        try:
            self._services.deployments.get(deployment)
        except InstanceNotFound:
            return None
        # Recorded, so the views show it within moments (the attempt that recorded it
        # may be racing this one): wait for its row, then answer as that attempt would.
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while time.monotonic() < deadline:
            with self._views.read() as tx:
                if deployment_version(tx, deployment) is not None:
                    break
            time.sleep(POLL_S)
        return self.show(principal, ids.instance_ref(deployment))

    def provision(
        self, principal: Principal, request: ProvisionRequest, key: str | None
    ) -> idempotency.Outcome:
        """Provision an instance and its inference key; returns at once, ``provisioning``.

        The new deployment's id is the idempotency claim's (``run_once``): a retry after the
        first attempt's process died mid-command finds the deployment that attempt recorded
        (and the secret it kept, under the same id) instead of provisioning a second one; if
        the first attempt recorded nothing, the retry provisions, once.
        """
        request.check_billing()

        def run(claim: UUID) -> InstanceAnswer:
            return self._made_before(principal, claim) or self._provision_as(principal, request, claim)

        return self._once(principal, key, idempotency.fingerprint("provision", request), 201, run)

    def _provision_as(self, principal: Principal, request: ProvisionRequest, claim: UUID) -> InstanceAnswer:
        """Provision a deployment whose id is ``claim``, its key's secret kept first."""
        with self._state.transaction() as tx:
            # Kept before the events are recorded, so no deployment exists whose key was
            # lost; a retry under this claim reuses the same secret.
            secret = secrets.hold(tx, claim, new_secret(INSTANCE_PREFIX)[0])
        command = RequestDeployment(
            account_id=ids.parse_id(principal.account_id, ids.ACCOUNT),
            model=request.model,
            capacity=check_capacity(request.capacity),
            tier=request.tier,
            name=request.name,
            deployment_id=claim,
            upload_id=byom_upload(self._views, principal.account_id, request.model),
            at=_now(),
        )
        done = provision_claimed(
            self._services, self._state, command, secret, lambda: self._made_before(principal, claim)
        )
        if not isinstance(done, Provisioned):
            return done
        return self._settled(principal, done.id, done.position)

    def destroy(self, principal: Principal, instance_id: str, key: str | None) -> idempotency.Outcome:
        """Destroy: billing stops now; the replicas stop in the background."""

        def run(_: UUID) -> InstanceAnswer:
            deployment = self._owned(principal, instance_id)
            position = self._services.deployments.request_teardown(
                OnDeployment(deployment_id=deployment, at=_now())
            )
            with self._state.transaction() as tx:
                secrets.forget(tx, deployment)
            # The last minutes are charged in the same step: the account's views show them too.
            self._follower.settle(ids.parse_id(principal.account_id, ids.ACCOUNT), position)
            return self._settled(principal, deployment, position)

        return self._once(principal, key, idempotency.fingerprint("destroy", instance_id), 200, run)

    def scale(
        self, principal: Principal, instance_id: str, request: ScaleRequest, key: str | None
    ) -> idempotency.Outcome:
        """Ask for capacity 1, 2, 4 or 8."""

        def run(_: UUID) -> InstanceAnswer:
            deployment = self._owned(principal, instance_id)
            command = WithCapacity(
                deployment_id=deployment, capacity=check_capacity(request.capacity), at=_now()
            )
            position = self._services.deployments.request_scale(command)
            return self._settled(principal, deployment, position)

        return self._once(principal, key, idempotency.fingerprint("scale", instance_id, request), 200, run)
