"""The low-balance policy: its validation, the decision of each step, and the guard exactly once.

The decision (``domain/deployments/low_balance.decide``) is checked as properties over every
state, allowance and hold; the service over eventsourcing's in-memory recorder, racing guards
included. The end-to-end run is tests/e2e/test_low_balance.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelyard.domain.accounts import aggregate as accounts
from modelyard.domain.accounts.low_balance import notify_threshold, parse_threshold, running_low
from modelyard.domain.accounts.service import AddCredits, OpenAccount
from modelyard.domain.catalog.hardware import Preset
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.aggregate import Deployment
from modelyard.domain.deployments.lifecycle import State
from modelyard.domain.deployments.low_balance import CHEAPER, Move, decide
from modelyard.domain.deployments.low_balance_service import (
    Guard,
    LowBalanceService,
    SetLowBalanceAllowance,
    SetLowBalancePolicy,
)
from modelyard.domain.deployments.service import OnDeployment, ReplicaCommand, RequestDeployment
from modelyard.domain.services import Services
from modelyard.domain.shared import errors
from modelyard.domain.shared.store import Store

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
ENDED = (State.TEARDOWN, State.DESTROYED, State.FAILED)


def _deployment(**fields: object) -> Deployment:
    base = Deployment(
        id=uuid4(),
        version=5,
        created_on=T0,
        modified_on=T0,
        account_id=uuid4(),
        prefix="dep_",
        name="d",
        model="smollm2-135m",
        size="small",  # type: ignore[arg-type]
        tier="dedicated",  # type: ignore[arg-type]
        capacity=1,
        gpu_type=None,
        region=None,
        preset=Preset.BALANCED,
        state=State.RUNNING,
    )
    return msgspec.structs.replace(base, **fields)


deployments = st.builds(
    lambda state, allows, held, preset, held_from: _deployment(
        state=state,
        on_low_balance=allows,
        held_for_balance=held and state is State.SCALED_TO_ZERO,
        preset=CHEAPER if held_from is not None else preset,
        preset_held_from=held_from,
    ),
    st.sampled_from(State),
    st.sampled_from(ev.OnLowBalance),
    st.booleans(),
    st.sampled_from(Preset),
    st.none() | st.sampled_from([p for p in Preset if p is not CHEAPER]),
)


@given(deployments, st.booleans())
def test_a_deployment_that_keeps_is_never_degraded(deployment: Deployment, low: bool) -> None:
    move = decide(msgspec.structs.replace(deployment, on_low_balance=ev.OnLowBalance.KEEP), low=low)
    assert move not in (Move.SCALE_TO_ZERO, Move.CHEAPER_PRESET)


@given(deployments, st.booleans())
def test_each_decision_fits_the_state_and_what_the_deployment_allows(
    deployment: Deployment, low: bool
) -> None:
    move = decide(deployment, low=low)
    if deployment.state in ENDED:
        assert move is None
    if move is Move.SCALE_TO_ZERO:
        assert low
        assert deployment.on_low_balance is ev.OnLowBalance.SCALE_TO_ZERO
        assert deployment.state is State.RUNNING
    if move is Move.CHEAPER_PRESET:
        assert low
        assert deployment.on_low_balance is ev.OnLowBalance.CHEAPER_PRESET
        assert deployment.preset is not CHEAPER
        assert deployment.preset_held_from is None
    if move is Move.WAKE:
        assert deployment.held_for_balance
        assert deployment.state is State.SCALED_TO_ZERO
    if move is Move.RESTORE_PRESET:
        assert deployment.preset_held_from is not None


@given(deployments)
def test_with_credit_back_only_undoing_steps_are_taken(deployment: Deployment) -> None:
    assert decide(deployment, low=False) in (None, Move.WAKE, Move.RESTORE_PRESET)


@given(deployments, st.booleans())
def test_a_step_taken_is_not_taken_again(deployment: Deployment, low: bool) -> None:
    """After the step's own effect on the aggregate, the same step is not due again."""
    move = decide(deployment, low=low)
    after = deployment
    if move is Move.SCALE_TO_ZERO:
        after = msgspec.structs.replace(deployment, state=State.SCALED_TO_ZERO, held_for_balance=True)
    elif move is Move.WAKE:
        after = msgspec.structs.replace(deployment, state=State.WAKING, held_for_balance=False)
    elif move is Move.CHEAPER_PRESET:
        after = msgspec.structs.replace(deployment, preset=CHEAPER, preset_held_from=deployment.preset)
    elif move is Move.RESTORE_PRESET:
        after = msgspec.structs.replace(deployment, preset=deployment.preset_held_from, preset_held_from=None)
    if move is not None:
        assert decide(after, low=low) is not move


@given(st.integers(-(10**9), 10**9), st.integers(0, 10**9))
def test_running_low_is_strictly_below_degrade_below(balance: int, threshold: int) -> None:
    policy = accounts.LowBalancePolicy(notify_below=threshold, degrade_below=threshold)
    assert running_low(balance, policy) is (balance < threshold)
    assert running_low(balance, None) is False


@pytest.mark.parametrize(
    ("text", "match"),
    [("-1", "negative"), ("abc", "not an amount"), ("NaN", "finite"), ("0.0000001", "micro"),
     ("2000000000", "most"), (3, "string")],
)  # fmt: skip
def test_bad_thresholds_are_refused_clearly(text: object, match: str) -> None:
    with pytest.raises(errors.InvalidAmount, match=match):
        parse_threshold("notify_below", text)


# --- the service ----------------------------------------------------------------------


@pytest.fixture
def store() -> Iterator[Store]:
    app = Store(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


def _running(services: Services, store: Store, account: UUID, allows: str) -> UUID:
    dep = services.deployments.request(RequestDeployment(account_id=account, model="smollm2-135m", at=T0)).id
    services.deployments.start_replica(
        ReplicaCommand(deployment_id=dep, replica="r1", base_url="http://x", at=T0)
    )
    services.deployments.activate(OnDeployment(deployment_id=dep, at=T0))
    LowBalanceService(store).set_allowance(
        SetLowBalanceAllowance(deployment_id=dep, on_low_balance=allows, at=T0)
    )
    return dep


def _charge(store: Store, account: UUID, amount: int, minute: int) -> None:
    acct = store.load(account, accounts.project_account, accounts.Account, errors.AccountNotFound)
    store.record(
        *accounts.charge_minute(
            acct,
            deployment_id=uuid4(),
            minute=T0 + timedelta(minutes=minute),
            amount=amount,
            metered_version=1,
            at=T0,
        )
    )


def test_policy_validation_writes_nothing(store: Store) -> None:
    services = Services.over(store)
    account = services.accounts.open_account(OpenAccount(name="a", at=T0)).id
    guard = LowBalanceService(store)
    before = store.recorder.max_notification_id()
    with pytest.raises(errors.InvalidAmount, match="at most notify_below"):
        guard.set_policy(SetLowBalancePolicy(account_id=account, notify_below=1, degrade_below=2, at=T0))
    with pytest.raises(errors.InvalidAmount, match="notify_below"):
        guard.set_policy(SetLowBalancePolicy(account_id=account, notify_below=-1, degrade_below=0, at=T0))
    assert store.recorder.max_notification_id() == before
    guard.set_policy(SetLowBalancePolicy(account_id=account, notify_below=3, degrade_below=2, at=T0))
    acct = services.accounts.get(account)
    assert acct.low_balance == accounts.LowBalancePolicy(notify_below=3, degrade_below=2)
    assert notify_threshold(acct, default=99) == 3


def test_degrade_then_restore_each_once_and_a_request_cannot_wake_it(store: Store) -> None:
    services = Services.over(store)
    guard = LowBalanceService(store)
    account = services.accounts.open_account(OpenAccount(name="a", at=T0)).id
    services.accounts.add_credits(AddCredits(account_id=account, amount=5_000_000, at=T0))
    guard.set_policy(
        SetLowBalancePolicy(account_id=account, notify_below=3_000_000, degrade_below=2_000_000, at=T0)
    )
    sleeper = _running(services, store, account, "scale_to_zero")
    cheap = _running(services, store, account, "cheaper_preset")
    keeper = _running(services, store, account, "keep")
    with pytest.raises(errors.InvalidRequest, match="on_low_balance"):
        guard.set_allowance(SetLowBalanceAllowance(deployment_id=keeper, on_low_balance="pause", at=T0))

    assert [guard.guard(Guard(deployment_id=d, at=T0)) for d in (sleeper, cheap, keeper)] == [None] * 3
    _charge(store, account, 3_500_000, 1)  # 1.5 USD left: below degrade_below
    steps = {d: guard.guard(Guard(deployment_id=d, at=T0)) for d in (sleeper, cheap, keeper)}
    assert steps[keeper] is None
    assert steps[sleeper] is not None
    assert steps[sleeper].move is Move.SCALE_TO_ZERO
    assert steps[sleeper].reason.startswith("low balance: 1.500000 USD")
    assert steps[cheap] is not None
    assert steps[cheap].move is Move.CHEAPER_PRESET
    slept = services.deployments.get(sleeper)
    assert (slept.state, slept.held_for_balance) == (State.SCALED_TO_ZERO, True)
    assert sleeper not in services.accounts.get(account).reservations
    assert (services.deployments.get(cheap).preset, services.deployments.get(cheap).preset_held_from) == (
        Preset.COST,
        Preset.BALANCED,
    )
    # Nothing more is due, however often it is asked; a request does not wake it.
    assert [guard.guard(Guard(deployment_id=d, at=T0)) for d in (sleeper, cheap)] == [None, None]
    with pytest.raises(errors.InsufficientCredits, match="add credits"):
        services.deployments.wake(OnDeployment(deployment_id=sleeper, at=T0))

    services.accounts.add_credits(AddCredits(account_id=account, amount=1_000_000, at=T0))
    woke, restored = (guard.guard(Guard(deployment_id=d, at=T0)) for d in (sleeper, cheap))
    assert woke is not None
    assert woke.move is Move.WAKE
    assert woke.reason.startswith("credit restored")
    assert restored is not None
    assert restored.move is Move.RESTORE_PRESET
    assert services.deployments.get(sleeper).state is State.WAKING
    assert sleeper in services.accounts.get(account).reservations
    assert services.deployments.get(cheap).preset is Preset.BALANCED
    assert [guard.guard(Guard(deployment_id=d, at=T0)) for d in (sleeper, cheap)] == [None, None]


def test_racing_guards_take_a_step_exactly_once(store: Store) -> None:
    services = Services.over(store)
    account = services.accounts.open_account(OpenAccount(name="a", at=T0)).id
    services.accounts.add_credits(AddCredits(account_id=account, amount=5_000_000, at=T0))
    LowBalanceService(store).set_policy(
        SetLowBalancePolicy(account_id=account, notify_below=3_000_000, degrade_below=2_000_000, at=T0)
    )
    dep = _running(services, store, account, "scale_to_zero")
    _charge(store, account, 4_000_000, 1)
    guards = [LowBalanceService(store) for _ in range(8)]
    barrier = threading.Barrier(len(guards))
    taken: list[object] = []

    def race(guard: LowBalanceService) -> None:
        barrier.wait()
        taken.append(guard.guard(Guard(deployment_id=dep, at=T0)))

    threads = [threading.Thread(target=race, args=(g,)) for g in guards]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(step is not None for step in taken) == 1
    topics = [stored.topic for stored in store.recorder.select_events(dep)]
    assert sum(topic.endswith("ScaledToZero") for topic in topics) == 1
