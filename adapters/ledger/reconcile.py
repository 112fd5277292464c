"""Reconciliation per deployment: served (replica events), billed (ledger), used (usage).

For each deployment of an account (or of the installation) and a period, it compares the
replica-seconds the deployment's own events say it served, priced at the table's rate
(``domain.billing.reconciliation``), with the ledger's charges for the same minutes, and
shows the tokens and requests the usage view counted. Only minutes the meter has already
recorded are compared, so a live deployment's minute in progress is never a difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec
from eventsourcing.persistence import ApplicationRecorder

from modelyard.adapters.views.db import ViewDatabase
from modelyard.domain.billing.reconciliation import metered_until, served
from modelyard.domain.shared import ids
from modelyard.domain.shared.events import DomainEvent
from modelyard.domain.shared.mapper import decode_event
from modelyard.projections.balances.queries import charges_between
from modelyard.projections.common import iso
from modelyard.projections.deployments.queries import Deployment, every_deployment, instances_of_account
from modelyard.projections.metrics.projection import minute_key
from modelyard.projections.metrics.queries import usage_between


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


class Reconciled(msgspec.Struct, frozen=True, kw_only=True):
    """One deployment's period: what it served, what was billed, what was used."""

    deployment_id: str
    account_id: str
    model: str
    since: str
    # The end of the compared minutes: the period's end or the last metered minute's.
    until: str
    replica_seconds: float
    minutes_billed: int
    billed_micros: int
    served_micros: int
    difference_micros: int
    tolerance_micros: int
    requests: int
    prompt_tokens: int
    completion_tokens: int
    flagged: bool


def reconcile(
    recorder: ApplicationRecorder,
    views: ViewDatabase,
    *,
    account_id: str | None,
    since: datetime,
    until: datetime,
) -> list[Reconciled]:
    """Every deployment of ``account_id`` (or of the installation) reconciled over ``[since, until)``."""
    with views.read() as tx:
        if account_id is None:
            scope = every_deployment(tx)
        else:
            scope = [(account_id, d) for d in instances_of_account(tx, account_id)]
    return [_one(recorder, views, account, deployment, since, until) for account, deployment in scope]


def _events(recorder: ApplicationRecorder, deployment: Deployment) -> Sequence[DomainEvent]:
    stored = recorder.select_events(deployment.id)
    return [e for s in stored if isinstance(e := decode_event(s.topic, s.state), DomainEvent)]


def _one(  # noqa: PLR0917 - one private step of reconcile, its arguments in its order
    recorder: ApplicationRecorder,
    views: ViewDatabase,
    account: str,
    deployment: Deployment,
    since: datetime,
    until: datetime,
) -> Reconciled:
    events = _events(recorder, deployment)
    # Whole minutes: charges are per minute. Serving is compared up to the last minute the
    # meter recorded; charges over the whole period, so one with nothing metered is a difference.
    start, stop = _minute(since), _minute(until)
    metered = metered_until(events)
    end = start if metered is None else max(start, min(stop, metered))
    serving = served(events, start, end)
    with views.read() as tx:
        minutes, billed = charges_between(tx, deployment.id, iso(start), iso(stop))
        usage = usage_between(tx, deployment.id, minute_key(start), minute_key(stop))
    # A boundary at each end of the period may fall inside a second, as every minute's may.
    tolerance = serving.tolerance_per_minute * (minutes + 1)
    difference = billed - serving.expected_micros
    return Reconciled(
        deployment_id=ids.public_id(deployment.prefix, deployment.id),
        account_id=account,
        model=deployment.model,
        since=iso(start),
        until=iso(end),
        replica_seconds=round(serving.replica_seconds, 3),
        minutes_billed=minutes,
        billed_micros=billed,
        served_micros=serving.expected_micros,
        difference_micros=difference,
        tolerance_micros=tolerance,
        requests=usage.requests,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        flagged=abs(difference) > tolerance,
    )
