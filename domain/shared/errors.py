"""One root domain error and a subclass per documented code.

Each carries the code clients branch on and the HTTP status the edge renders it with; the
API maps them in one place (``api/errors.py``) and never invents its own for these cases.
"""

from __future__ import annotations


class DomainError(Exception):
    """A command refused by the domain, with a clear message."""

    code = "INVALID_REQUEST"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(DomainError):
    code, status = "INVALID_REQUEST", 400


class InvalidCapacity(DomainError):
    code, status = "INVALID_CAPACITY", 400


class InvalidModel(DomainError):
    code, status = "INVALID_MODEL", 400


class ModelNotFound(DomainError):
    code, status = "MODEL_NOT_FOUND", 404


class InvalidBillingMode(DomainError):
    code, status = "INVALID_BILLING_MODE", 400


class InvalidAmount(DomainError):
    code, status = "INVALID_AMOUNT", 400


class InsufficientCredits(DomainError):
    code, status = "INSUFFICIENT_CREDITS", 402


class AccountNotFound(DomainError):
    code, status = "ACCOUNT_NOT_FOUND", 404


class InstanceNotFound(DomainError):
    code, status = "INSTANCE_NOT_FOUND", 404


class KeyNotFound(DomainError):
    code, status = "KEY_NOT_FOUND", 404


class WebhookNotFound(DomainError):
    code, status = "WEBHOOK_NOT_FOUND", 404


class InstanceNotRunning(DomainError):
    code, status = "INSTANCE_NOT_RUNNING", 409


class IllegalTransition(DomainError):
    code, status = "ILLEGAL_TRANSITION", 409


class DuplicateMinute(DomainError):
    code, status = "DUPLICATE_MINUTE", 409


class ConcurrencyConflict(DomainError):
    code, status = "CONFLICT", 409


class ProvisioningFailed(DomainError):
    code, status = "PROVISIONING_FAILED", 502
