"""The low-balance use cases behind the routes, for the caller's own account."""

from __future__ import annotations

from datetime import UTC, datetime

from modelyard.api.auth import Principal
from modelyard.api.low_balance.schemas import (
    AllowanceAnswer,
    AllowanceRequest,
    Policy,
    PolicyAnswer,
    PolicyRequest,
)
from modelyard.domain.accounts.low_balance import parse_threshold
from modelyard.domain.deployments.aggregate import Deployment
from modelyard.domain.deployments.lifecycle import status_v2
from modelyard.domain.deployments.low_balance_service import (
    LowBalanceService,
    SetLowBalanceAllowance,
    SetLowBalancePolicy,
)
from modelyard.domain.services import Services
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import InstanceNotFound
from modelyard.domain.shared.money import format_usd


class LowBalance:
    """Read and set the account's policy and each deployment's allowance (read from the store)."""

    def __init__(self, services: Services, low_balance: LowBalanceService, default_notify_below: int) -> None:
        self._services, self._service, self._default = services, low_balance, default_notify_below

    def policy(self, principal: Principal) -> PolicyAnswer:
        """The policy in force for the caller's account."""
        account = ids.parse_id(principal.account_id, ids.ACCOUNT)
        found = self._service.policy_of(account)
        if found is None:
            policy = Policy(
                account_id=principal.account_id,
                notify_below=format_usd(self._default),
                degrade_below=format_usd(0),
                source="default",
            )
        else:
            policy = Policy(
                account_id=principal.account_id,
                notify_below=format_usd(found.notify_below),
                degrade_below=format_usd(found.degrade_below),
                source="account",
            )
        return PolicyAnswer(data=policy)

    def set_policy(self, principal: Principal, request: PolicyRequest) -> PolicyAnswer:
        """Replace the account's policy (both thresholds checked before anything is written)."""
        notify = parse_threshold("notify_below", request.notify_below)
        degrade = parse_threshold("degrade_below", request.degrade_below)
        self._service.set_policy(
            SetLowBalancePolicy(
                account_id=ids.parse_id(principal.account_id, ids.ACCOUNT),
                notify_below=notify,
                degrade_below=degrade,
                at=datetime.now(UTC),
            )
        )
        return self.policy(principal)

    def _owned(self, principal: Principal, deployment_id: str) -> Deployment:
        deployment = self._services.deployments.get(ids.parse_deployment_id(deployment_id))
        if ids.public_id(ids.ACCOUNT, deployment.account_id) != principal.account_id:
            raise InstanceNotFound(f"No deployment {deployment_id} on this account.")
        return deployment

    def allowance(self, principal: Principal, deployment_id: str) -> AllowanceAnswer:
        """What the deployment allows when its account runs low, and where it is now."""
        deployment = self._owned(principal, deployment_id)
        held = deployment.preset_held_from
        return AllowanceAnswer(
            deployment_id=ids.deployment_ref(deployment.id),
            on_low_balance=str(deployment.on_low_balance),
            scaled_to_zero_for_balance=deployment.held_for_balance,
            preset=str(deployment.preset),
            preset_held_from=None if held is None else str(held),
            reason=deployment.low_balance_reason,
            status=status_v2(deployment.state),
        )

    def set_allowance(
        self, principal: Principal, deployment_id: str, request: AllowanceRequest
    ) -> AllowanceAnswer:
        """Record what the deployment allows."""
        deployment = self._owned(principal, deployment_id)
        self._service.set_allowance(
            SetLowBalanceAllowance(
                deployment_id=deployment.id, on_low_balance=request.on_low_balance, at=datetime.now(UTC)
            )
        )
        return self.allowance(principal, deployment_id)
