"""Read the access view (with the keys, balances and deployments views beside it)."""

from __future__ import annotations

from uuid import UUID

import msgspec

from modelyard.projections.base import Tx


class KeyRow(msgspec.Struct, frozen=True, kw_only=True):
    """One key of an account as its owner may list it: never its secret or its hash."""

    key_id: str
    kind: str
    name: str
    display: str
    revoked: bool
    created_at: str
    # An instance key's deployment, and a scoped key's grants: deployment (uuid.hex) -> role.
    deployment_uuid: str | None
    grants: dict[str, str]


class Member(msgspec.Struct, frozen=True, kw_only=True):
    """One member of an organisation and what it may do there."""

    account_id: str
    name: str
    permissions: tuple[str, ...]


class OrgRow(msgspec.Struct, frozen=True, kw_only=True):
    """An organisation: its account, name and plan."""

    org_id: str
    name: str
    plan: str


class Owner(msgspec.Struct, frozen=True, kw_only=True):
    """Whose a deployment is, and what state it is in."""

    account_id: str
    state: str


def keys_of_account(tx: Tx, account_id: str) -> list[KeyRow]:
    """Every key of the account, oldest first, revoked ones included."""
    rows = tx.execute(
        "SELECT k.key_id, k.kind, COALESCE(n.name, ''), k.display, k.revoked, k.created_at, k.deployment_uuid"
        " FROM api_keys k LEFT JOIN key_names n ON n.key_id = k.key_id"
        " WHERE k.account_id = %s ORDER BY k.created_at, k.key_id",
        [account_id],
    )
    grants: dict[str, dict[str, str]] = {}
    for key_id, deployment, role in tx.execute(
        "SELECT g.key_id, g.deployment_uuid, g.role FROM key_grants g"
        " JOIN api_keys k ON k.key_id = g.key_id WHERE k.account_id = %s",
        [account_id],
    ):
        grants.setdefault(str(key_id), {})[str(deployment)] = str(role)
    return [
        KeyRow(
            key_id=str(key_id),
            kind=str(kind),
            name=str(name),
            display=str(display),
            revoked=bool(revoked),
            created_at=str(created),
            deployment_uuid=None if deployment is None else str(deployment),
            grants=grants.get(str(key_id), {}),
        )
        for key_id, kind, name, display, revoked, created, deployment in rows
    ]


def key_of_account(tx: Tx, account_id: str, key_id: str) -> KeyRow | None:
    """One key if the account owns it, else None (another account's key is not found)."""
    for row in keys_of_account(tx, account_id):
        if row.key_id == key_id:
            return row
    return None


def deployment_owner(tx: Tx, deployment_id: UUID) -> Owner | None:
    """The account a deployment belongs to and its state, or None if there is none."""
    rows = tx.execute("SELECT account_id, state FROM deployments WHERE id = %s", [deployment_id.hex])
    return Owner(account_id=str(rows[0][0]), state=str(rows[0][1])) if rows else None


def members_of(tx: Tx, org_id: str) -> list[Member]:
    """The organisation's members (none: it is no organisation), by account id."""
    rows = tx.execute(
        "SELECT m.member_id, COALESCE(b.name, ''), m.permissions FROM org_members m"
        " LEFT JOIN balances b ON b.account_id = m.member_id WHERE m.org_id = %s ORDER BY m.member_id",
        [org_id],
    )
    return [
        Member(account_id=str(member), name=str(name), permissions=tuple(str(perms).split()))
        for member, name, perms in rows
    ]


def orgs_of_member(tx: Tx, member_id: str) -> list[OrgRow]:
    """The organisations the account belongs to."""
    rows = tx.execute(
        "SELECT m.org_id, COALESCE(b.name, ''), COALESCE(b.plan, 'free') FROM org_members m"
        " LEFT JOIN balances b ON b.account_id = m.org_id WHERE m.member_id = %s ORDER BY m.org_id",
        [member_id],
    )
    return [OrgRow(org_id=str(org), name=str(name), plan=str(plan)) for org, name, plan in rows]


def org_row(tx: Tx, org_id: str) -> OrgRow | None:
    """The organisation's name and plan, if the account exists."""
    rows = tx.execute("SELECT name, plan FROM balances WHERE account_id = %s", [org_id])
    return OrgRow(org_id=org_id, name=str(rows[0][0]), plan=str(rows[0][1])) if rows else None


def account_exists(tx: Tx, account_id: str) -> bool:
    """Whether the account's opening is in the views."""
    return bool(tx.execute("SELECT 1 FROM balances WHERE account_id = %s", [account_id]))


class MinuteUsage(msgspec.Struct, frozen=True, kw_only=True):
    """One deployment-minute of an account: requests and tokens served, micro-dollars charged."""

    deployment_id: str
    minute: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    charged: int


def usage_by_minute(tx: Tx, account_id: str) -> list[MinuteUsage]:
    """The account's usage per deployment and minute (``YYYY-MM-DDTHH:MM``), metered or charged."""
    merged: dict[tuple[str, str], list[int]] = {}
    for dep, minute, requests, prompt, completion in tx.execute(
        "SELECT deployment_id, minute, SUM(requests), SUM(prompt_tokens), SUM(completion_tokens)"
        " FROM metrics_minute WHERE account_id = %s GROUP BY deployment_id, minute",
        [account_id],
    ):
        row = merged.setdefault((str(dep), str(minute)[:16]), [0, 0, 0, 0])
        row[0] += int(requests)
        row[1] += int(prompt)
        row[2] += int(completion)
    for dep, minute, amount in tx.execute(
        "SELECT deployment_id, minute, amount FROM ledger WHERE account_id = %s AND kind = 'charge'",
        [account_id],
    ):
        merged.setdefault((str(dep), str(minute)[:16]), [0, 0, 0, 0])[3] += int(amount)
    return [
        MinuteUsage(
            deployment_id=dep,
            minute=minute,
            requests=r[0],
            prompt_tokens=r[1],
            completion_tokens=r[2],
            charged=r[3],
        )
        for (dep, minute), r in sorted(merged.items())
    ]
