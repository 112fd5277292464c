"""Webhook secrets and the two signatures every delivery carries.

``X-AINative-Signature: sha256=<hex HMAC-SHA256(secret, body)>`` is the second document's
contract (its receivers verify with ``hmac.new(secret.encode(), body, sha256)``).
The Standard Webhooks headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``)
are made by the ``standardwebhooks`` library, so a receiver can verify with a stock library
and refuse replays by timestamp; the secret is in its ``whsec_<base64>`` form, so the one
string a subscriber is shown works for both. While a rotation's overlap lasts,
``webhook-signature`` carries a signature by each live secret (the standard's way to
rotate); ``X-AINative-Signature`` is signed with the newest.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
# 32 random bytes: as long as the HMAC-SHA256 key it becomes.
SECRET_BYTES = 32


def new_webhook_secret() -> str:
    """A fresh signing secret, ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def ainative_signature(secret: str, body: bytes) -> str:
    """The ``X-AINative-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed_headers(
    message_id: str, at: datetime, body: bytes, secrets_newest_first: Sequence[str]
) -> dict[str, str]:
    """Every header a delivery is sent with, signed by the live secrets (at least one)."""
    if not secrets_newest_first:
        raise ValueError("a delivery is signed with at least one secret")
    text = body.decode()
    standard = " ".join(Webhook(s).sign(message_id, at, text) for s in secrets_newest_first)
    return {
        "content-type": "application/json",
        "user-agent": "modelyard-webhooks/1",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": standard,
        "x-ainative-signature": ainative_signature(secrets_newest_first[0], body),
    }
