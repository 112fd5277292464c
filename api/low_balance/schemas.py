"""Shapes of the low-balance routes: the account's policy, and what a deployment allows."""

from __future__ import annotations

from typing import Any

import msgspec


class PolicyRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PUT /v1/account/low-balance-policy``: both thresholds, USD as strings (``"0"`` turns one off).

    Typed ``Any`` so a number, a negative or a word gets the domain's own message.
    """

    notify_below: Any
    degrade_below: Any


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    """The policy in force; ``source`` is ``account`` once the owner set one, else ``default``."""

    account_id: str
    notify_below: str
    degrade_below: str
    source: str


class PolicyAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """``{"success": true, "data": {policy…}}``, as the first dialect answers."""

    success: bool = True
    data: Policy


class AllowanceRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PATCH …/deployments/{id}/low-balance``: ``keep``, ``scale_to_zero`` or ``cheaper_preset``."""

    on_low_balance: Any


class AllowanceAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """What the deployment allows, and where the low-balance policy has it now."""

    deployment_id: str
    on_low_balance: str
    # True while it is scaled to zero because the account ran low (credit wakes it).
    scaled_to_zero_for_balance: bool
    preset: str
    # The preset it goes back to once credit is added; None unless moved for low balance.
    preset_held_from: str | None
    # Why the last low-balance step (or its undoing) was taken; None before any.
    reason: str | None
    status: str
