"""Small helpers every projection shares: how times and ids are written into rows."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from modelyard.domain.shared import ids


def iso(at: datetime) -> str:
    """A UTC timestamp as rows store it: fixed-width text, identical on SQLite and PostgreSQL."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def account_ref(account_id: UUID) -> str:
    """The public id of an account."""
    return ids.public_id(ids.ACCOUNT, account_id)


def event_ref(originator_id: UUID, version: int) -> str:
    """The id of one event: its aggregate (as every view stores a UUID, its hex) and version."""
    return f"{originator_id.hex}:{version}"
