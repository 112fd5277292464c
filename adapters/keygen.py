"""Secrets for keys: generated here, shown once, stored only as hashes (domain.keys)."""

from __future__ import annotations

import secrets

from modelyard.domain.keys.aggregate import hash_secret

MANAGEMENT_PREFIX = "auxen_live_"
INSTANCE_PREFIX = "auxk_"
# A scoped key infers on the deployments it was granted; an operator key tops up credits.
SCOPED_PREFIX = "auxs_"
OPERATOR_PREFIX = "auxop_"


def new_secret(prefix: str) -> tuple[str, str, str]:
    """A fresh secret with ``prefix``: (secret, its hash, what may be displayed later)."""
    secret = prefix + secrets.token_urlsafe(32)
    return secret, hash_secret(secret), secret[: len(prefix) + 4] + "…"
