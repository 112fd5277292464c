"""Fold key names and organisation memberships into the access view."""

from __future__ import annotations

from collections.abc import Sequence

from modelyard.domain.accounts.aggregate import MemberAdded, MemberRemoved
from modelyard.domain.keys.aggregate import KeyNamed
from modelyard.domain.shared import ids
from modelyard.projections.base import OneByOne, Tx
from modelyard.projections.common import account_ref

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS key_names (
        key_id TEXT PRIMARY KEY,
        name TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS org_members (
        org_id TEXT NOT NULL,
        member_id TEXT NOT NULL,
        permissions TEXT NOT NULL,
        PRIMARY KEY (org_id, member_id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS org_members_member ON org_members (member_id)",
)


class AccessProjection(OneByOne):
    """Keys' names (beside the keys view) and who belongs to which organisation, with what."""

    name = "access"
    schema: Sequence[str] = SCHEMA
    tables: Sequence[str] = ("key_names", "org_members")

    def apply(self, tx: Tx, event: object, position: int) -> None:
        """Fold one event; others pass by."""
        match event:
            case KeyNamed():
                tx.execute(
                    "INSERT INTO key_names (key_id, name) VALUES (%s, %s)"
                    " ON CONFLICT (key_id) DO UPDATE SET name = EXCLUDED.name",
                    [ids.public_id(ids.KEY, event.originator_id), event.name],
                )
            case MemberAdded():
                tx.execute(
                    "INSERT INTO org_members (org_id, member_id, permissions) VALUES (%s, %s, %s)"
                    " ON CONFLICT (org_id, member_id) DO UPDATE SET permissions = EXCLUDED.permissions",
                    [
                        account_ref(event.originator_id),
                        account_ref(event.member_id),
                        " ".join(event.permissions),
                    ],
                )
            case MemberRemoved():
                tx.execute(
                    "DELETE FROM org_members WHERE org_id = %s AND member_id = %s",
                    [account_ref(event.originator_id), account_ref(event.member_id)],
                )
