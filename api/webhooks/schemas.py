"""Request and response shapes of the webhook routes, kept apart from events and state rows."""

from __future__ import annotations

from typing import Annotated

import msgspec

# A URL as long as the domain allows; the domain checks its form, the edge its destination.
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
EventName = Annotated[str, msgspec.Meta(max_length=64)]


class WebhookRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST …/webhooks``: where to send, and which events (checked by the domain)."""

    url: Url
    events: Annotated[list[EventName], msgspec.Meta(max_length=16)]


class Webhook(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=False):
    """A subscription; ``secret`` is shown once, when it is made or rotated, and null after."""

    id: str
    deployment_id: str
    instance_id: str
    url: str
    events: list[str]
    status: str
    created_at: str
    secret: str | None = None


class WebhookData(msgspec.Struct, frozen=True, kw_only=True):
    """``data`` of one subscription's answer."""

    webhook: Webhook


class WebhookAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """``{"success": true, "data": {"webhook": {…}}}``."""

    success: bool = True
    data: WebhookData


class WebhookList(msgspec.Struct, frozen=True, kw_only=True):
    """``data`` of a deployment's subscriptions."""

    webhooks: list[Webhook]
    count: int


class WebhookListAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """``{"success": true, "data": {"webhooks": […], "count": n}}``."""

    success: bool = True
    data: WebhookList


class AttemptShown(msgspec.Struct, frozen=True, kw_only=True):
    """One try of a delivery: when, the receiver's status (null: no answer), what failed."""

    at: str
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryShown(msgspec.Struct, frozen=True, kw_only=True):
    """One event owed to the subscription; ``id`` is the ``webhook-id`` it is sent with."""

    id: str
    event: str
    status: str
    body: str
    attempts: list[AttemptShown]
    created_at: str
    updated_at: str


class DeliveryList(msgspec.Struct, frozen=True, kw_only=True):
    """``data`` of a subscription's deliveries, newest event first."""

    deliveries: list[DeliveryShown]
    count: int


class DeliveryListAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """``{"success": true, "data": {"deliveries": […], "count": n}}``."""

    success: bool = True
    data: DeliveryList


class Redriven(msgspec.Struct, frozen=True, kw_only=True):
    """How many dead letters were queued to be sent again."""

    redriven: int


class RedriveAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """``{"success": true, "data": {"redriven": n}}``."""

    success: bool = True
    data: Redriven
