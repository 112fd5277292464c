"""Clock-free time helpers: the domain is handed instants, it never reads a clock.

Every instant the domain records is timezone-aware UTC. Minutes are UTC minutes
``[m, m + 60 s)``; runtime is pro-rated to whole seconds.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from modelyard.domain.shared.errors import InvalidRequest

MINUTE = timedelta(minutes=1)
_ZERO = timedelta(0)


def require_utc(at: datetime, what: str = "time") -> datetime:
    """``at`` itself if it is timezone-aware UTC; a naive or shifted instant is refused.

    Comparing naive and aware instants raises deep inside a command, and an offset other
    than zero would put minute boundaries off the UTC grid the meter bills on.
    """
    if not isinstance(at, datetime) or at.utcoffset() != _ZERO:
        raise InvalidRequest(f"The {what} must be a timezone-aware UTC datetime, got {at!r}.")
    return at


def minute_floor(at: datetime) -> datetime:
    """The start of the UTC minute ``at`` falls in."""
    return at.replace(second=0, microsecond=0)


def whole_second(at: datetime) -> datetime:
    """``at`` without its fraction: billable runtime begins and ends on whole seconds."""
    return at.replace(microsecond=0)


def is_minute_start(at: datetime) -> bool:
    """Whether ``at`` is exactly the start of a minute."""
    return at == minute_floor(at)
