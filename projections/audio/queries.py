"""Read the audio view: seconds of audio per model for an account."""

from __future__ import annotations

import msgspec

from modelyard.projections.base import Tx


class AudioUsage(msgspec.Struct, frozen=True, kw_only=True):
    """Requests and seconds of audio of one model."""

    model: str
    requests: int
    audio_seconds: float


def audio_by_model(tx: Tx, account_id: str, since_minute: str = "") -> list[AudioUsage]:
    """An account's audio usage per model from ``since_minute`` (inclusive) on, by model name."""
    rows = tx.execute(
        "SELECT model, SUM(requests), SUM(audio_ms) FROM audio_minute"
        " WHERE account_id = %s AND minute >= %s GROUP BY model ORDER BY model",
        [account_id, since_minute],
    )
    return [AudioUsage(model=str(m), requests=int(r), audio_seconds=int(ms) / 1000) for m, r, ms in rows]
