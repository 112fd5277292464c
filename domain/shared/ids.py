"""Public ids: a prefix naming the kind, then the aggregate's UUID as 32 hex digits."""

from __future__ import annotations

from uuid import UUID

from modelyard.domain.shared.errors import (
    AccountNotFound,
    DomainError,
    InstanceNotFound,
    KeyNotFound,
    WebhookNotFound,
)

INSTANCE = "inst_"
DEPLOYMENT = "dep_"
ACCOUNT = "acct_"
KEY = "key_"
WEBHOOK = "wh_"

_NOT_FOUND: dict[str, type[DomainError]] = {
    INSTANCE: InstanceNotFound,
    DEPLOYMENT: InstanceNotFound,
    ACCOUNT: AccountNotFound,
    KEY: KeyNotFound,
    WEBHOOK: WebhookNotFound,
}

_NOUNS = {INSTANCE: "instance", DEPLOYMENT: "deployment", ACCOUNT: "account", KEY: "key", WEBHOOK: "webhook"}


def public_id(prefix: str, uuid: UUID) -> str:
    """The id clients see for an aggregate."""
    return prefix + uuid.hex


def parse_id(text: str, *prefixes: str) -> UUID:
    """The aggregate UUID behind a public id with one of ``prefixes``; malformed -> not found."""
    for prefix in prefixes:
        if text.startswith(prefix) and len(text) == len(prefix) + 32:
            try:
                return UUID(hex=text[len(prefix) :])
            except ValueError:
                break
    error = _NOT_FOUND.get(prefixes[0], DomainError)
    return _raise(error(f"No {_noun(prefixes[0])} with id {text!r}."))


def parse_deployment_id(text: str) -> UUID:
    """Either dialect's deployment id (``inst_…`` or ``dep_…``): one deployment, one UUID."""
    return parse_id(text, INSTANCE, DEPLOYMENT)


def instance_ref(deployment_id: UUID) -> str:
    """How the first dialect prints a deployment, whichever dialect created it."""
    return INSTANCE + deployment_id.hex


def deployment_ref(deployment_id: UUID) -> str:
    """How the second dialect prints a deployment, whichever dialect created it."""
    return DEPLOYMENT + deployment_id.hex


def deployment_uuid(text: str) -> UUID:
    """The deployment behind any spelling older records hold: ``inst_``/``dep_`` + hex, or a UUID.

    Views store ``uuid.hex`` only; this lets a projection fold records written before that
    (a usage record's ``deployment_id`` was the printed ``inst_…`` id) into the same form.
    """
    for prefix in (INSTANCE, DEPLOYMENT):
        if text.startswith(prefix):
            return parse_deployment_id(text)
    try:
        return UUID(text)
    except ValueError:
        raise InstanceNotFound(f"No deployment with id {text!r}.") from None


def _noun(prefix: str) -> str:
    return _NOUNS.get(prefix, "object")


def _raise(error: DomainError) -> UUID:
    raise error
