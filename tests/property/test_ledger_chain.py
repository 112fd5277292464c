"""The ledger export is tamper-evident: every edit of a random history's export is caught.

Random histories of credits and metered minutes are exported (CSV and JSON lines) from a
real event store and its views; the export verifies against the store. Then one random
edit — an amount changed, a line dropped, two lines swapped, or an amount changed by
someone who re-computes the whole chain — and verification names the first bad line.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.adapters.eventlog.sources import NotificationLogSource
from modelyard.adapters.ledger.export import ExportFormat, StoreEvents, export_text, read_export, write_export
from modelyard.adapters.ledger.verify import StoreLookup, verify_export
from modelyard.adapters.views.db import SqliteViews
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.billing.chain import ChainEnd, ChainLine, Unchained, chain
from modelyard.domain.deployments.metering import due_minutes
from modelyard.domain.deployments.service import (
    MeterMinute,
    OnDeployment,
    ReplicaCommand,
    RequestDeployment,
)
from modelyard.domain.services import Services
from modelyard.domain.shared.errors import QuotaExceeded
from modelyard.domain.shared.store import Store
from modelyard.projections.balances.queries import export_rows
from modelyard.projections.registry import all_projections
from modelyard.workers.projection_runner import ProjectionRunner

T0 = datetime(2026, 3, 1, tzinfo=UTC)
histories = st.lists(
    st.tuples(st.sampled_from(["credit", "deploy", "meter"]), st.integers(0, 3), st.integers(1, 500)),
    min_size=2,
    max_size=14,
)
edits = st.tuples(st.sampled_from(["amount", "drop", "swap", "forge"]), st.integers(0), st.integers(0))


def _play(services: Services, ops: list[tuple[str, int, int]]) -> None:
    accounts = [services.accounts.open_account(OpenAccount(name=f"a{i}", at=T0)).id for i in range(2)]
    for account in accounts:
        services.accounts.add_credits(AddCredits(account_id=account, amount=5_000_000, at=T0))
    deployments = []
    now = T0
    for name, pick, amount in ops:
        now += timedelta(seconds=amount)
        account = accounts[pick % len(accounts)]
        if name == "credit":
            services.accounts.add_credits(AddCredits(account_id=account, amount=amount * 1000, at=now))
        elif name == "deploy":
            request = RequestDeployment(account_id=account, model="smollm2-135m", at=now)
            try:
                dep = services.deployments.request(request).id
            except QuotaExceeded:
                continue  # the plan's deployments are all running: refused, nothing written
            services.deployments.start_replica(ReplicaCommand(deployment_id=dep, replica="r1", at=now))
            services.deployments.activate(OnDeployment(deployment_id=dep, at=now))
            deployments.append(dep)
        elif deployments:
            dep = deployments[pick % len(deployments)]
            for minute in due_minutes(services.deployments.get(dep), now):
                services.deployments.meter(MeterMinute(deployment_id=dep, minute=minute, at=now))


class _History:
    def __init__(self, root: Path, ops: list[tuple[str, int, int]]) -> None:
        env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(root / "e.sqlite3")}
        self.store = Store(env={**env, "CREATE_TABLE": "y"})
        _play(Services.over(self.store), ops)
        self.views = SqliteViews(root / "v.sqlite3")
        source = NotificationLogSource(self.store.recorder)
        ProjectionRunner(self.views, source, all_projections()).run_until_idle()

    def export(self, fmt: ExportFormat) -> str:
        with self.views.transaction() as tx:
            rows = export_rows(tx)
        return "".join(export_text(rows, StoreEvents(self.store.recorder), fmt))

    def close(self) -> None:
        self.views.close()
        self.store.close()


@pytest.fixture
def history_root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def _edited(text: str, fmt: ExportFormat, edit: tuple[str, int, int]) -> tuple[str, int]:
    """``text`` with one edit, and the first line (1-based) the edit touched."""
    lines, end = read_export(text)
    kind, first, second = edit
    i, j = sorted((first % len(lines), second % len(lines)))
    if kind == "swap" and i == j:
        kind = "drop"
    edited = list(lines)
    if kind == "amount":
        edited[i] = msgspec.structs.replace(lines[i], amount=lines[i].amount + 1)
    elif kind == "drop":
        del edited[i]
    elif kind == "swap":
        edited[i], edited[j] = lines[j], lines[i]
    else:  # forge: change an amount and every later balance of the account, re-compute every hash
        plain = [Unchained(**_fields(x)) for x in lines]
        shift = 7 if plain[i].kind == "credit" else -7
        plain[i] = msgspec.structs.replace(plain[i], amount=plain[i].amount + 7)
        for k in range(i, len(plain)):
            if plain[k].account_id == plain[i].account_id:
                plain[k] = msgspec.structs.replace(plain[k], balance_after=plain[k].balance_after + shift)
        edited, end = chain(plain)
    return _write(edited, end, fmt, text), i + 1


def _fields(line: ChainLine) -> dict[str, object]:
    return {k: v for k, v in msgspec.structs.asdict(line).items() if k not in ("line", "prev", "hash")}


def _write(lines: list[ChainLine], end: ChainEnd | None, fmt: ExportFormat, original: str) -> str:
    closing = end if end is not None else read_export(original)[1]
    assert closing is not None
    return "".join(write_export(lines, closing, fmt))


@settings(max_examples=20, deadline=None)
@given(ops=histories, edit=edits, fmt=st.sampled_from(list(ExportFormat)))
def test_every_edit_of_an_export_is_detected(
    ops: list[tuple[str, int, int]], edit: tuple[str, int, int], fmt: ExportFormat
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        history = _History(Path(folder), ops)
        try:
            text = history.export(fmt)
            events = StoreLookup(history.store.recorder)
            intact = verify_export(text, events)
            assert intact.intact, intact.reason
            assert intact.lines == len(read_export(text)[0]) >= 2
            edited, touched = _edited(text, fmt, edit)
            assert edited != text
            verdict = verify_export(edited, events)
            assert not verdict.intact
            assert verdict.bad_line == touched, (edit, verdict)
            chain_only = verify_export(edited)
            if edit[0] == "forge":
                # Re-computed hashes fool the chain alone; only the events catch the forger.
                assert chain_only.intact
            else:
                assert chain_only.bad_line == touched
        finally:
            history.close()
