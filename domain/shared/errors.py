"""One root error for every refusal the product names, and a subclass per domain code.

An error carries the stable ``code`` clients branch on and a human ``message``; nothing
here knows about HTTP. The API maps codes to statuses in one table (``api/errors.py``),
and its own refusals (keys, rate limits, idempotency) subclass the same root.
"""

from __future__ import annotations

from typing import ClassVar


class ModelyardError(Exception):
    """A refusal with a stable code and a clear message: the root of every named error."""

    code: ClassVar[str] = "INVALID_REQUEST"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DomainError(ModelyardError):
    """A command refused by the domain."""


class InvalidRequest(DomainError):
    """The request is malformed or names something that cannot be."""

    code = "INVALID_REQUEST"


class InvalidCapacity(DomainError):
    """A capacity other than 1, 2, 4 or 8, or one the tier does not scale to."""

    code = "INVALID_CAPACITY"


class InvalidModel(DomainError):
    """A provision request names a model that is not in the catalog."""

    code = "INVALID_MODEL"


class ModelNotFound(DomainError):
    """A catalog read names a model that is not in the catalog."""

    code = "MODEL_NOT_FOUND"


class InvalidBillingMode(DomainError):
    """A ``billing`` parameter: pay-as-you-go is the only mode."""

    code = "INVALID_BILLING_MODE"


class InvalidAmount(DomainError):
    """A credit or charge that is not a whole, positive, bounded number of micro-dollars."""

    code = "INVALID_AMOUNT"


class InsufficientCredits(DomainError):
    """The balance does not cover what the command would start to spend."""

    code = "INSUFFICIENT_CREDITS"


class PlanUpgradeRequired(DomainError):
    """The model is above the account's plan: a bigger plan reaches it, waiting does not."""

    code = "PLAN_UPGRADE_REQUIRED"


class OrgNotFound(DomainError):
    """No organisation with this id that the caller belongs to."""

    code = "ORG_NOT_FOUND"


class QuotaExceeded(DomainError):
    """The account already runs as many deployments or replicas as its plan allows."""

    code = "QUOTA_EXCEEDED"


class AccountNotFound(DomainError):
    """No account with this id."""

    code = "ACCOUNT_NOT_FOUND"


class InstanceNotFound(DomainError):
    """No deployment with this id (in either dialect)."""

    code = "INSTANCE_NOT_FOUND"


class KeyNotFound(DomainError):
    """No key with this id."""

    code = "KEY_NOT_FOUND"


class WebhookNotFound(DomainError):
    """No webhook subscription with this id."""

    code = "WEBHOOK_NOT_FOUND"


class InstanceNotRunning(DomainError):
    """The deployment has no replica serving right now."""

    code = "INSTANCE_NOT_RUNNING"


class IllegalTransition(DomainError):
    """The lifecycle does not allow this change from the deployment's state."""

    code = "ILLEGAL_TRANSITION"


class DuplicateMinute(DomainError):
    """A minute already metered or charged."""

    code = "DUPLICATE_MINUTE"


class ConcurrencyConflict(DomainError):
    """Another writer changed the aggregate first; reload and retry."""

    code = "CONFLICT"


class ProvisioningFailed(DomainError):
    """The deployment could not be placed or started."""

    code = "PROVISIONING_FAILED"
