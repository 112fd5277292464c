"""The finance use cases behind the routes: export, quote, reconcile, for the caller's account."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec
from eventsourcing.persistence import ApplicationRecorder

from modelyard.adapters.ledger.export import ExportFormat, StoreEvents, export_text
from modelyard.adapters.ledger.reconcile import reconcile
from modelyard.adapters.views.db import ViewDatabase
from modelyard.api.auth import Principal
from modelyard.api.deployments.schemas import Engine
from modelyard.api.finance.schemas import (
    Hardware,
    Quote,
    QuoteAnswer,
    QuoteRequest,
    Reconciliation,
    ReconciliationAnswer,
    ReconciliationData,
)
from modelyard.domain.billing.pricing import check_capacity
from modelyard.domain.deployments.service import RequestDeployment
from modelyard.domain.services import Services
from modelyard.domain.shared import ids
from modelyard.domain.shared.errors import InvalidBillingMode, InvalidRequest
from modelyard.domain.shared.money import format_usd
from modelyard.projections.balances.queries import Balance, balance_of, export_rows

#: The engine (and its arguments) a replica of ``model`` under ``preset`` runs here, or None.
EngineOf = Callable[[str, str], Engine | None]
# The longest period one reconciliation reads.
MAX_PERIOD = timedelta(days=366)


class Finance:
    """What the account's owner asks of finance: its chained ledger, quotes, reconciliation."""

    def __init__(
        self,
        services: Services,
        views: ViewDatabase,
        recorder: ApplicationRecorder,
        engine_of: EngineOf,
    ) -> None:
        self._services, self._views, self._recorder, self._engine_of = services, views, recorder, engine_of

    def export(self, principal: Principal, fmt: ExportFormat) -> str:
        """The account's ledger as a chained export (every line, then the closing line)."""
        with self._views.read() as tx:
            rows = export_rows(tx, principal.account_id)
        return "".join(export_text(rows, StoreEvents(self._recorder), fmt))

    def quote(self, principal: Principal, request: QuoteRequest) -> QuoteAnswer:
        """What provisioning ``request`` would cost now: the provision's own price and checks."""
        if request.billing is not msgspec.UNSET:
            raise InvalidBillingMode("The billing parameter is no longer supported: pay-as-you-go only.")
        quoted = self._services.deployments.quote(
            RequestDeployment(
                account_id=ids.parse_id(principal.account_id, ids.ACCOUNT),
                model=request.model,
                capacity=check_capacity(request.capacity),
                tier=request.tier,
                gpu_type=request.gpu_type,
                region=request.region,
                preset=request.preset,
                at=datetime.now(UTC),
            )
        )
        engine = self._engine_of(quoted.model, quoted.preset) if quoted.placeable else None
        with self._views.read() as tx:
            found = balance_of(tx, principal.account_id)
        balance = found or Balance(plan="free", balance=0, credited=0, charged=0)
        total = balance.reserved + quoted.minute_micros
        quote = Quote(
            model=quoted.model,
            size=quoted.size,
            tier=quoted.tier,
            capacity=quoted.capacity,
            hardware=Hardware(
                engine=None if engine is None else engine.name,
                arguments=[] if engine is None else engine.arguments,
                gpu_type=quoted.gpu_type,
                region=quoted.region,
                preset=quoted.preset,
                placeable=engine is not None,
                reason=quoted.placement_refusal,
            ),
            price_per_minute_usd=format_usd(quoted.minute_micros),
            price_per_minute_micros=quoted.minute_micros,
            price_per_hour_usd=format_usd(quoted.hour_micros),
            admitted=quoted.refusal is None,
            refusal=quoted.refusal,
            balance_available_usd=format_usd(balance.available),
            running_per_minute_usd=format_usd(balance.reserved),
            total_per_minute_usd=format_usd(total),
            lasts_minutes=max(balance.balance, 0) // total if total else 0,
        )
        return QuoteAnswer(data=quote)

    def reconciliation(
        self, principal: Principal, since: datetime | None, until: datetime | None
    ) -> ReconciliationAnswer:
        """Each of the account's deployments: served, billed and used in ``[since, until)``."""
        end = until or datetime.now(UTC)
        start = since or end - timedelta(days=30)
        if start.tzinfo is None or end.tzinfo is None:
            raise InvalidRequest("since and until need a time zone (e.g. 2026-11-29T12:00:00Z).")
        if not timedelta(0) < end - start <= MAX_PERIOD:
            raise InvalidRequest("The period must end after it starts and span at most 366 days.")
        rows = reconcile(self._recorder, self._views, account_id=principal.account_id, since=start, until=end)
        shown = [
            Reconciliation(
                deployment_id=r.deployment_id,
                model=r.model,
                since=r.since,
                until=r.until,
                replica_seconds=r.replica_seconds,
                minutes_billed=r.minutes_billed,
                billed_usd=format_usd(r.billed_micros),
                served_usd=format_usd(r.served_micros),
                difference_micros=r.difference_micros,
                tolerance_micros=r.tolerance_micros,
                requests=r.requests,
                prompt_tokens=r.prompt_tokens,
                completion_tokens=r.completion_tokens,
                flagged=r.flagged,
            )
            for r in rows
        ]
        data = ReconciliationData(
            account_id=principal.account_id,
            since=start.isoformat(),
            until=end.isoformat(),
            deployments=shown,
            flagged=sum(r.flagged for r in shown),
        )
        return ReconciliationAnswer(data=data)
