"""The first dialect's management use cases, shared by its REST routes and the MCP tools.

Each takes the authenticated principal, maps the request to a typed command, calls one
application service, waits until the views show the command's effect (read-your-writes),
and answers with a typed response Struct read from the views.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from modelyard.adapters.keygen import INSTANCE_PREFIX, new_secret
from modelyard.adapters.state import secrets
from modelyard.adapters.views.db import ViewDatabase
from modelyard.adapters.views.follow import ViewsFollower
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
from modelyard.domain.billing.pricing import check_capacity
from modelyard.domain.catalog.models import CATALOG
from modelyard.domain.deployments.service import OnDeployment, Provision, RequestDeployment, WithCapacity
from modelyard.domain.services import Services
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import InstanceNotFound
from modelyard.domain.shared.money import format_usd
from modelyard.projections.balances.queries import balance_of, charges_by_deployment
from modelyard.projections.deployments.queries import instance_for_account, instances_of_account
from modelyard.projections.keys.queries import instance_key_hint


def _now() -> datetime:
    return datetime.now(UTC)


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
        balance = found.balance if found else 0
        return BalanceAnswer(
            data=BalanceData(
                account_id=principal.account_id,
                plan=found.plan if found else "free",
                balance_usd=format_usd(balance),
                balance_micros=balance,
                credited_usd=format_usd(found.credited if found else 0),
                charged_usd=format_usd(found.charged if found else 0),
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
        run: Callable[[], InstanceAnswer],
    ) -> idempotency.Outcome:
        return idempotency.run_once(
            self._state, account_id=principal.account_id, key=key, request=request, status=status, command=run
        )

    def _settled(self, principal: Principal, deployment: UUID, position: int) -> InstanceAnswer:
        self._follower.settle(deployment, position)
        return self.show(principal, ids.instance_ref(deployment))

    def provision(
        self, principal: Principal, request: ProvisionRequest, key: str | None
    ) -> idempotency.Outcome:
        """Provision an instance and its inference key; returns at once, ``provisioning``."""
        request.check_billing()

        def run() -> InstanceAnswer:
            secret, digest, display = new_secret(INSTANCE_PREFIX)
            command = RequestDeployment(
                account_id=ids.parse_id(principal.account_id, ids.ACCOUNT),
                model=request.model,
                capacity=check_capacity(request.capacity),
                tier=request.tier,
                name=request.name,
                at=_now(),
            )
            done = self._services.deployments.provision(
                Provision(deployment=command, key_hash=digest, key_display=display)
            )
            with self._state.transaction() as tx:
                secrets.keep(tx, done.id, secret)
            return self._settled(principal, done.id, done.position)

        return self._once(principal, key, idempotency.fingerprint("provision", request), 201, run)

    def destroy(self, principal: Principal, instance_id: str, key: str | None) -> idempotency.Outcome:
        """Destroy: billing stops now; the replicas stop in the background."""

        def run() -> InstanceAnswer:
            deployment = self._owned(principal, instance_id)
            position = self._services.deployments.request_teardown(
                OnDeployment(deployment_id=deployment, at=_now())
            )
            with self._state.transaction() as tx:
                secrets.forget(tx, deployment)
            return self._settled(principal, deployment, position)

        return self._once(principal, key, idempotency.fingerprint("destroy", instance_id), 200, run)

    def scale(
        self, principal: Principal, instance_id: str, request: ScaleRequest, key: str | None
    ) -> idempotency.Outcome:
        """Ask for capacity 1, 2, 4 or 8."""

        def run() -> InstanceAnswer:
            deployment = self._owned(principal, instance_id)
            command = WithCapacity(
                deployment_id=deployment, capacity=check_capacity(request.capacity), at=_now()
            )
            position = self._services.deployments.request_scale(command)
            return self._settled(principal, deployment, position)

        return self._once(principal, key, idempotency.fingerprint("scale", instance_id, request), 200, run)
