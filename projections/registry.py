"""Every projection the product keeps: the views the API and the workers read."""

from __future__ import annotations

from modelyard.projections.access.projection import AccessProjection
from modelyard.projections.audio.projection import AudioProjection
from modelyard.projections.balances.projection import BalancesProjection
from modelyard.projections.base import Projection
from modelyard.projections.deployments.projection import DeploymentsProjection
from modelyard.projections.keys.projection import KeysProjection
from modelyard.projections.low_balance.projection import LowBalanceProjection
from modelyard.projections.metrics.projection import MetricsProjection
from modelyard.projections.uploads.projection import UploadsProjection
from modelyard.projections.webhooks.projection import WebhooksProjection


def all_projections() -> list[Projection]:
    """A fresh instance of every projection, in the order a runner applies them."""
    return [
        DeploymentsProjection(),
        BalancesProjection(),
        KeysProjection(),
        MetricsProjection(),
        WebhooksProjection(),
        AudioProjection(),
        UploadsProjection(),
        AccessProjection(),
        LowBalanceProjection(),
    ]
