"""Recording a provision under its idempotency claim: what both dialects' create does."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from modelyard.adapters.state import secrets
from modelyard.adapters.views.db import ViewDatabase
from modelyard.domain.deployments.service import Provision, Provisioned, RequestDeployment
from modelyard.domain.keys.aggregate import display_of, hash_secret
from modelyard.domain.services import Services
from modelyard.domain.shared.errors import ConcurrencyConflict

Answer = TypeVar("Answer")


def provision_claimed(
    services: Services,
    state: ViewDatabase,
    command: RequestDeployment,
    secret: str,
    made_before: Callable[[], Answer | None],
) -> Provisioned | Answer:
    """Record ``command`` (its id the idempotency claim's) with the key whose ``secret`` the
    state store already holds under that id.

    Another attempt under the same claim that recorded it first is answered with its own
    result (``made_before``); any other failure forgets the held secret, so no secret stays
    behind a deployment that was never recorded.
    """
    provision = Provision(deployment=command, key_hash=hash_secret(secret), key_display=display_of(secret))
    try:
        return services.deployments.provision(provision)
    except ConcurrencyConflict:
        made = made_before()
        if made is None:
            raise
        return made
    except BaseException:
        assert command.deployment_id is not None  # a claimed provision names its id
        with state.transaction() as tx:
            secrets.forget(tx, command.deployment_id)
        raise
