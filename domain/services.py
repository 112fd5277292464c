"""The application services, one per context, over one store: the product's only write path."""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.domain.accounts.service import AccountsService
from modelyard.domain.deployments.service import DeploymentsService
from modelyard.domain.keys.service import KeysService
from modelyard.domain.shared.store import Store
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

    @classmethod
    def over(cls, store: Store) -> Services:
        """Every service writing through ``store``."""
        return cls(
            accounts=AccountsService(store),
            deployments=DeploymentsService(store),
            keys=KeysService(store),
            webhooks=WebhooksService(store),
            usage=UsageService(store),
        )
