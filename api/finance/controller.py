"""``/v1/ledger/export``, ``/v1/quote``, ``/v1/reconciliation``: finance for the account's owner."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, QueryParameter, SkipValidation

from modelyard.adapters.ledger.export import ExportFormat
from modelyard.api.auth import Principal
from modelyard.api.bodies import bounded_body
from modelyard.api.errors import COMMON_ERRORS
from modelyard.api.finance.actions import Finance
from modelyard.api.finance.schemas import QuoteAnswer, QuoteRequest, ReconciliationAnswer


class FinanceController(Controller):
    """The chained ledger export, quotes before provisioning, and reconciliation."""

    path = "/v1"
    tags = ["finance"]
    before_request = staticmethod(bounded_body)

    @get("/ledger/export", operation_id="exportLedger", sync_to_thread=True, responses=COMMON_ERRORS)
    def export(
        self,
        finance: NamedDependency[SkipValidation[Finance]],
        request: Request[Principal, Any, Any],
        fmt: Annotated[ExportFormat, QueryParameter(name="format")] = ExportFormat.JSONL,
    ) -> Response[str]:
        """The account's ledger, each line chained to the one before and to its events.

        ``modelyard audit verify FILE`` re-computes the chain and checks each line against
        the event store (or Kafka); any edit is found, and the first bad line named.
        """
        return Response(finance.export(request.user, fmt), media_type=fmt.media_type)

    @post("/quote", operation_id="quote", status_code=200, sync_to_thread=True, responses=COMMON_ERRORS)
    def quote(
        self,
        finance: NamedDependency[SkipValidation[Finance]],
        request: Request[Principal, Any, Any],
        data: JSONBody[QuoteRequest],
    ) -> QuoteAnswer:
        """What a provision with this body would cost, whether it would be admitted, and how
        long the balance lasts with it and every running deployment."""
        return finance.quote(request.user, data)

    @get("/reconciliation", operation_id="reconcile", sync_to_thread=True, responses=COMMON_ERRORS)
    def reconciliation(
        self,
        finance: NamedDependency[SkipValidation[Finance]],
        request: Request[Principal, Any, Any],
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
    ) -> ReconciliationAnswer:
        """Per deployment: replica-seconds served, minutes and dollars billed, tokens and
        requests; a difference between billed and served beyond rounding is flagged."""
        return finance.reconciliation(request.user, since, until)
