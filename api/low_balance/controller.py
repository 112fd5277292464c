"""``/v1/account/low-balance-policy`` and ``/api/v1/public/deployments/{id}/low-balance``."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, patch, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, SkipValidation

from modelyard.api.auth import Principal
from modelyard.api.bodies import bounded_body
from modelyard.api.errors import COMMON_ERRORS, COMMON_OPENAI_ERRORS, OPENAI_ERRORS
from modelyard.api.low_balance.actions import LowBalance
from modelyard.api.low_balance.schemas import AllowanceAnswer, AllowanceRequest, PolicyAnswer, PolicyRequest

Uses = NamedDependency[SkipValidation[LowBalance]]
Caller = Request[Principal, Any, Any]


class LowBalancePolicyController(Controller):
    """The account owner's low-balance policy."""

    path = "/v1/account"
    tags = ["finance"]
    before_request = staticmethod(bounded_body)

    @get(
        "/low-balance-policy",
        operation_id="getLowBalancePolicy",
        sync_to_thread=True,
        responses=COMMON_ERRORS,
    )
    def get_policy(self, low_balance: Uses, request: Caller) -> PolicyAnswer:
        """The thresholds in force: the account's own, else the operator's notice threshold."""
        return low_balance.policy(request.user)

    @put(
        "/low-balance-policy",
        operation_id="setLowBalancePolicy",
        sync_to_thread=True,
        responses=COMMON_ERRORS,
    )
    def set_policy(self, low_balance: Uses, request: Caller, data: JSONBody[PolicyRequest]) -> PolicyAnswer:
        """``notify_below`` (``account.credits_low`` when a charge crosses it) and
        ``degrade_below`` (deployments that allow it are scaled to zero or moved to the
        ``cost`` preset below it, and moved back when credit is added), USD strings,
        ``degrade_below`` <= ``notify_below``."""
        return low_balance.set_policy(request.user, data)


class DeploymentLowBalanceController(Controller):
    """What one deployment allows when its account runs low (the second dialect's paths)."""

    path = "/api/v1/public/deployments"
    tags = ["deployments"]
    before_request = staticmethod(bounded_body)
    # The second dialect's routes answer errors in OpenAI's shape, as their responses say.
    opt = OPENAI_ERRORS

    @get(
        "/{deployment_id:str}/low-balance",
        operation_id="getLowBalanceAllowance",
        sync_to_thread=True,
        responses=COMMON_OPENAI_ERRORS,
    )
    def get_allowance(
        self, low_balance: Uses, request: Caller, deployment_id: FromPath[str]
    ) -> AllowanceAnswer:
        """``on_low_balance`` and where the policy has the deployment now."""
        return low_balance.allowance(request.user, deployment_id)

    @patch(
        "/{deployment_id:str}/low-balance",
        operation_id="setLowBalanceAllowance",
        sync_to_thread=True,
        responses=COMMON_OPENAI_ERRORS,
    )
    def set_allowance(
        self,
        low_balance: Uses,
        request: Caller,
        deployment_id: FromPath[str],
        data: JSONBody[AllowanceRequest],
    ) -> AllowanceAnswer:
        """``on_low_balance``: ``keep`` (the default), ``scale_to_zero`` or ``cheaper_preset``."""
        return low_balance.set_allowance(request.user, deployment_id, data)
