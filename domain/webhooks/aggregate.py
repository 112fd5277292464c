"""The webhook subscription aggregate (FEATURES E4).

A subscription names one deployment, one URL and the event names it wants. The secret its
deliveries are signed with (HMAC-SHA256) is not part of the history: it lives in the state
store (``adapters/state/webhook_secrets.py``), shown once and rotatable, so the events topic
(kept forever, read by every consumer) never carries it. Subscriptions recorded before that
carried it in ``secret``; they still decode.
"""

from __future__ import annotations

from datetime import datetime
from functools import singledispatch
from urllib.parse import urlsplit
from uuid import UUID, uuid4

from modelyard.domain.deployments.aggregate import Deployment
from modelyard.domain.deployments.lifecycle import State
from modelyard.domain.shared.errors import InvalidRequest
from modelyard.domain.shared.events import Aggregate, DomainEvent, NotThisAggregate, projector, touched

# The event names of the second document, in its order, then the account's events a user
# of prepaid credits needs (sent to the subscriptions of the account's deployments).
WEBHOOK_EVENTS = (
    "deployment.active",
    "deployment.degraded",
    "deployment.sla_breach",
    "deployment.recovered",
    "deployment.scaled",
    "deployment.preset_changed",
    "account.credits_low",
    "account.credits_exhausted",
)
MAX_URL_LENGTH = 2048


# ``omit_defaults``: a subscription without ``secret`` (all of them now) stores none.
class WebhookSubscribed(DomainEvent, frozen=True, kw_only=True, omit_defaults=True):
    """A URL subscribed to some of one deployment's events.

    ``secret`` is empty: subscriptions recorded before the secrets moved to the state store
    carried theirs here, and still decode.
    """

    account_id: UUID
    deployment_id: UUID
    url: str
    events: tuple[str, ...]
    secret: str = ""


class WebhookRemoved(DomainEvent, frozen=True, kw_only=True):
    """The subscription ended: no more deliveries are owed to it."""


class WebhookSubscription(Aggregate, frozen=True, kw_only=True):
    """Who is told what about one deployment, and where."""

    account_id: UUID
    deployment_id: UUID
    url: str
    events: tuple[str, ...]
    removed: bool = False

    def wants(self, event_name: str) -> bool:
        """Whether a delivery of ``event_name`` is owed to this subscription."""
        return not self.removed and event_name in self.events


@singledispatch
def _mutate(event: DomainEvent, subscription: WebhookSubscription | None) -> WebhookSubscription | None:
    raise NotThisAggregate(f"{type(event).__name__} is not a webhook event")


@_mutate.register
def _(event: WebhookSubscribed, _: None) -> WebhookSubscription:
    return WebhookSubscription(
        id=event.originator_id,
        version=event.originator_version,
        created_on=event.timestamp,
        modified_on=event.timestamp,
        account_id=event.account_id,
        deployment_id=event.deployment_id,
        url=event.url,
        events=event.events,
    )


@_mutate.register
def _(event: WebhookRemoved, subscription: WebhookSubscription) -> WebhookSubscription:
    return touched(subscription, event, removed=True)


project_webhook = projector(_mutate)


def check_url(url: str) -> str:
    """The URL if deliveries can be POSTed to it: absolute http(s) with a host."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH or any(c.isspace() for c in url):
        raise InvalidRequest(f"A webhook url must be an absolute http(s) URL; got {url!r}.")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidRequest(f"A webhook url must be an absolute http(s) URL; got {url!r}.")
    return url


def check_events(events: object) -> tuple[str, ...]:
    """The subscribed event names, de-duplicated in the document's order; unknown -> 400."""
    if isinstance(events, str) or not isinstance(events, list | tuple) or not events:
        raise InvalidRequest(f"events must be a non-empty list of: {', '.join(WEBHOOK_EVENTS)}.")
    unknown = [name for name in events if name not in WEBHOOK_EVENTS]
    if unknown:
        raise InvalidRequest(f"Unknown webhook events {unknown!r}; one of {', '.join(WEBHOOK_EVENTS)}.")
    return tuple(name for name in WEBHOOK_EVENTS if name in events)


def subscribe_webhook(deployment: Deployment, *, url: str, events: object, at: datetime) -> WebhookSubscribed:
    """A new subscription of ``url`` to some of one deployment's events, while it is not ending."""
    if deployment.state in {State.TEARDOWN, State.DESTROYED}:
        raise InvalidRequest("This deployment is being destroyed; it sends no more events.")
    checked_url, checked_events = check_url(url), check_events(events)
    return WebhookSubscribed(
        originator_id=uuid4(),
        originator_version=1,
        timestamp=at,
        account_id=deployment.account_id,
        deployment_id=deployment.id,
        url=checked_url,
        events=checked_events,
    )


def remove_webhook(subscription: WebhookSubscription, at: datetime) -> WebhookRemoved:
    """Stop deliveries; removing twice is refused so the history says when it happened."""
    if subscription.removed:
        raise InvalidRequest("This webhook subscription is already removed.")
    return WebhookRemoved(
        originator_id=subscription.id, originator_version=subscription.version + 1, timestamp=at
    )
