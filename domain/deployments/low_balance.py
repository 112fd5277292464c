"""What a deployment does when its account runs low, and how it comes back: pure decisions.

Each deployment says what it allows (``OnLowBalance``): ``keep`` (the default: nothing
until zero stops it), ``scale_to_zero`` (released, billing stops; a request does not wake
it, credit does) or ``cheaper_preset`` (moved to ``cost``, the preset it had kept to go
back to). ``decide`` reads only the aggregate and whether the account runs low, so any
number of guards, restarted at any moment, take each step once: the step changes the
aggregate, and a racing writer loses on its version and decides again on the new state.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from modelyard.domain.catalog.hardware import Preset
from modelyard.domain.deployments import events as ev
from modelyard.domain.deployments.aggregate import Deployment
from modelyard.domain.deployments.lifecycle import State, state_after
from modelyard.domain.shared.errors import InvalidRequest

#: Where ``cheaper_preset`` moves a deployment.
CHEAPER = Preset.COST
# States the preset may change in: not ended, not failed.
_CONFIGURABLE = frozenset(
    {State.PROVISIONING, State.RUNNING, State.SCALING, State.DEGRADED, State.SCALED_TO_ZERO, State.WAKING}
)


class Move(StrEnum):
    """One step of the low-balance policy on one deployment."""

    SCALE_TO_ZERO = "scale_to_zero"
    CHEAPER_PRESET = "cheaper_preset"
    WAKE = "wake"
    RESTORE_PRESET = "restore_preset"


def parse_allowance(text: object) -> ev.OnLowBalance:
    """``keep``, ``scale_to_zero`` or ``cheaper_preset``; anything else is a clear 400."""
    if isinstance(text, str) and text in ev.OnLowBalance.__members__.values():
        return ev.OnLowBalance(text)
    raise InvalidRequest(f"Unknown on_low_balance {text!r}; one of {', '.join(ev.OnLowBalance)}.")


def decide(deployment: Deployment, *, low: bool) -> Move | None:
    """The one step due for ``deployment`` now, or None."""
    allows = deployment.on_low_balance
    if low:
        if allows is ev.OnLowBalance.SCALE_TO_ZERO and deployment.state is State.RUNNING:
            return Move.SCALE_TO_ZERO
        if (
            allows is ev.OnLowBalance.CHEAPER_PRESET
            and deployment.state in _CONFIGURABLE
            and deployment.preset_held_from is None
            and deployment.preset is not CHEAPER
        ):
            return Move.CHEAPER_PRESET
    # Undo what is held and no longer called for: credit came, or the allowance changed.
    if (
        deployment.held_for_balance
        and deployment.state is State.SCALED_TO_ZERO
        and (not low or allows is not ev.OnLowBalance.SCALE_TO_ZERO)
    ):
        return Move.WAKE
    if (
        deployment.preset_held_from is not None
        and deployment.state in _CONFIGURABLE
        and (not low or allows is not ev.OnLowBalance.CHEAPER_PRESET)
    ):
        return Move.RESTORE_PRESET
    return None


def set_allowance(
    deployment: Deployment, allowance: ev.OnLowBalance, at: datetime
) -> ev.LowBalanceAllowanceSet:
    """Record what the deployment allows when its account runs low."""
    state_after(deployment.state, ev.LowBalanceAllowanceSet)
    return ev.LowBalanceAllowanceSet(
        originator_id=deployment.id,
        originator_version=deployment.version + 1,
        timestamp=at,
        on_low_balance=allowance,
    )


def step_event(
    deployment: Deployment, move: Move, reason: str, at: datetime
) -> ev.ScaledToZero | ev.WakeRequested | ev.PresetChanged:
    """The deployment event of ``move`` (the lifecycle checked), carrying ``reason``."""
    dep, version = deployment.id, deployment.version + 1
    event: ev.ScaledToZero | ev.WakeRequested | ev.PresetChanged
    match move:
        case Move.SCALE_TO_ZERO:
            event = ev.ScaledToZero(
                originator_id=dep, originator_version=version, timestamp=at, reason=reason, for_balance=True
            )
        case Move.WAKE:
            event = ev.WakeRequested(
                originator_id=dep, originator_version=version, timestamp=at, reason=reason
            )
        case Move.CHEAPER_PRESET:
            event = ev.PresetChanged(
                originator_id=dep,
                originator_version=version,
                timestamp=at,
                preset=CHEAPER,
                reason=reason,
                held_from=deployment.preset,
            )
        case Move.RESTORE_PRESET:
            assert deployment.preset_held_from is not None
            event = ev.PresetChanged(
                originator_id=dep,
                originator_version=version,
                timestamp=at,
                preset=deployment.preset_held_from,
                reason=reason,
            )
    state_after(deployment.state, type(event))
    return event
