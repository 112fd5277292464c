"""Destroy settles at once: the minutes a deployment still owes are metered when it ends.

Tearing a deployment down closes its last billing segment. Nothing can run in the rest of
that minute any more, so its partial charge (and any completed minute the meter has not
reached yet) is final now: ``settle_on_teardown`` meters each of them, in order, and
charges the account, in the same record as the teardown. The balance read right after a
destroy is then final; the meter later finds nothing left to bill.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import msgspec

from modelyard.domain.accounts.aggregate import Account, charge_minute, project_account
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.aggregate import Deployment, project_deployment
from modelyard.domain.deployments.metering import due_minutes, meter_minute, minute_of
from modelyard.domain.shared.events import DomainEvent
from modelyard.domain.shared.time import MINUTE


class Settled(NamedTuple):
    """The metered minutes and their charges, and the account after them (for its next event)."""

    events: list[DomainEvent]
    account: Account


def settle_on_teardown(
    deployment: Deployment, teardown: ev.TeardownRequested, account: Account, at: datetime
) -> Settled:
    """Meter and charge every minute ``deployment`` still owes once ``teardown`` has ended it.

    ``teardown`` is the deployment's next event (not yet recorded); each metered minute
    follows it, at the next version, stamped ``at``.
    """
    ended = project_deployment(deployment, [teardown])
    assert ended is not None  # folding a deployment's own event keeps it
    # Every segment is closed now; the last minute any of them touches is owed in full.
    ends = [s.end for s in ended.segments if s.end is not None]
    horizon = minute_of(max([at, *ends])) + MINUTE
    events: list[DomainEvent] = []
    for minute in due_minutes(ended, horizon):
        metered = meter_minute(ended, minute, minute + MINUTE)
        if metered is None:
            continue
        metered = msgspec.structs.replace(metered, timestamp=at)
        charges = charge_minute(
            account,
            deployment_id=deployment.id,
            minute=minute,
            amount=metered.amount,
            metered_version=metered.originator_version,
            at=at,
        )
        events += [metered, *charges]
        ended = project_deployment(ended, [metered]) or ended
        account = project_account(account, charges) or account
    return Settled(events=events, account=account)
