"""The application services, one per context, over one store: the product's only write path."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from modelyard.domain.accounts.service import AccountsService
from modelyard.domain.catalog.fit import HostCapacity
from modelyard.domain.catalog.models import Plan
from modelyard.domain.catalog.plans import PLAN_QUOTAS, Quota
from modelyard.domain.deployments.service import DeploymentsService
from modelyard.domain.keys.service import KeysService
from modelyard.domain.shared.store import Store
from modelyard.domain.uploads.service import UploadsService
from modelyard.domain.usage.service import UsageService
from modelyard.domain.webhooks.service import WebhooksService


@dataclass(frozen=True)
class Services:
    """Accounts, deployments, keys and access, webhooks, usage: each its own service."""

    accounts: AccountsService
    deployments: DeploymentsService
    keys: KeysService
    webhooks: WebhooksService
    usage: UsageService
    uploads: UploadsService

    @classmethod
    def over(
        cls,
        store: Store,
        quotas: Mapping[Plan, Quota] = PLAN_QUOTAS,
        host: HostCapacity | Callable[[], HostCapacity] | None = None,
    ) -> Services:
        """Every service writing through ``store``; deployments are admitted within ``quotas``,
        and, given ``host``, only where the cluster can place them."""
        return cls(
            accounts=AccountsService(store),
            deployments=DeploymentsService(store, quotas, host),
            keys=KeysService(store),
            webhooks=WebhooksService(store),
            usage=UsageService(store),
            uploads=UploadsService(store),
        )
