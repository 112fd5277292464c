"""The HTTP edge: ``create_app`` builds the Litestar app from what the composition root hands it.

The app opens nothing itself. Its handlers declare what they use (``Provide``): the first
dialect's use cases (``instances``), the inference gateway (``gateway``), the workers'
health (``workers_health``); the caller is the request's ``user``, authenticated by a
guard before the body is read. The lifespan only runs what belongs to the serving loop:
the usage writer's flushes, the MCP session manager, the upstream connection pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from litestar import Litestar, Router
from litestar.di import Provide
from litestar.handlers import asgi
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.types import Receive, Scope, Send

from modelyard import __version__
from modelyard.adapters.ratelimit.limiter import RateLimiter
from modelyard.api.access.actions import Access
from modelyard.api.access.controller import (
    CatalogController,
    CreditsController,
    DeploymentPermissions,
    InstancePermissions,
    KeysController,
    OperatorGuard,
    OrgsController,
    UsageController,
)
from modelyard.api.access.limits import TokenLimits
from modelyard.api.access_log import AccessLog, flush_lines
from modelyard.api.anthropic.controller import AnthropicController
from modelyard.api.auth import KeyCache, ManagementGuard
from modelyard.api.deployments.actions import Deployments
from modelyard.api.deployments.chat import DeploymentChatController
from modelyard.api.deployments.controller import DeploymentsController
from modelyard.api.deployments.metrics import InferenceMetricsController, Observability
from modelyard.api.errors import handle_exception
from modelyard.api.finance.actions import Finance
from modelyard.api.finance.controller import FinanceController
from modelyard.api.gateway.calls import Gateway
from modelyard.api.gateway.controller import GatewayController
from modelyard.api.gateway.media import Media
from modelyard.api.gateway.media_controller import MediaController, PublicMediaController
from modelyard.api.health.controller import HealthController, WorkersHealth
from modelyard.api.instances.actions import Instances
from modelyard.api.instances.controller import InstancesController
from modelyard.api.low_balance.actions import LowBalance
from modelyard.api.low_balance.controller import DeploymentLowBalanceController, LowBalancePolicyController
from modelyard.api.mcp import build_mcp
from modelyard.api.metrics import ApiMetrics, MetricsController, http_metrics
from modelyard.api.ratelimit import RateLimitMiddleware, count_unrouted
from modelyard.api.routing.controller import ProvidersController, RoutedChatController
from modelyard.api.routing.router import ChatRouter
from modelyard.api.uploads.actions import Uploads
from modelyard.api.uploads.controller import UploadsController
from modelyard.api.webhooks.actions import Webhooks
from modelyard.api.webhooks.controller import DeploymentWebhooksController, InstanceWebhooksController
from modelyard.domain.catalog.models import Plan
from modelyard.domain.catalog.plans import PLAN_LIMITS, Limits


@dataclass(frozen=True)
class Edge:
    """Everything the API's handlers and lifespan use, built by the composition root."""

    instances: Instances
    gateway: Gateway
    finance: Finance
    key_cache: KeyCache
    limiter: RateLimiter
    rate_limit_rpm: int
    webhooks: Webhooks
    workers_health: WorkersHealth = list
    # The second dialect's deployment use cases (``/api/v1/public/deployments``).
    deployments: Deployments | None = None
    observability: Observability | None = None
    # The Prometheus series of this process (``GET /metrics``); none: no such route.
    metrics: ApiMetrics | None = None
    routing: ChatRouter | None = None
    # Embeddings, rerank and audio (api/gateway/media.py).
    media: Media | None = None
    # Model uploads (api/uploads/).
    uploads: Uploads | None = None
    # Keys, grants, organisations, the catalog by plan, credits (``api.access``).
    access: Access | None = None
    plan_limits: Mapping[Plan, Limits] = field(default_factory=lambda: dict(PLAN_LIMITS))

    # The low-balance policy and allowances; none: no such routes.
    low_balance: LowBalance | None = None


class _App(Litestar):
    """Litestar, with requests that no route takes counted against the rate limits too."""

    limits: RateLimitMiddleware | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        """See ``api.ratelimit.count_unrouted``."""
        if self.limits is None:
            await super().__call__(scope, receive, send)
            return
        await count_unrouted(self.limits, scope, receive, send, super().__call__)


def _constant(value: object) -> Provide:
    return Provide(lambda: value, use_cache=True, sync_to_thread=False)


def create_app(edge: Edge) -> Litestar:
    """The API over ``edge``; serving it starts the usage writer, the routes kept warm and the MCP
    sessions."""
    mcp_server, mcp_app = build_mcp(edge.instances, edge.key_cache)

    # The MCP endpoint takes the management guard as the REST routes do: no session, and no
    # stream held open, for a caller without a valid management key.
    @asgi("/mcp", is_mount=True, copy_scope=True, guards=[ManagementGuard(edge.key_cache)])
    async def mcp_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await mcp_app(scope, receive, send)  # type: ignore[arg-type]  # Starlette's looser ASGI types

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        try:
            async with mcp_server.session_manager.run(), anyio.create_task_group() as tasks:
                tasks.start_soon(edge.gateway.usage.run)
                tasks.start_soon(edge.gateway.forwarder.keep_warm)
                yield
                edge.gateway.usage.stop()
                edge.gateway.forwarder.stop()
        finally:
            await edge.gateway.forwarder.close()
            if edge.routing is not None:
                await edge.routing.client.close()
            flush_lines()

    prometheus = http_metrics() if edge.metrics is not None else None
    limits = RateLimitMiddleware(edge.limiter, edge.rate_limit_rpm, edge.key_cache, edge.plan_limits)
    app = _App(
        route_handlers=[*_routes(edge), mcp_endpoint],
        dependencies=_dependencies(edge),
        exception_handlers={Exception: handle_exception},
        middleware=[AccessLog, *([prometheus.middleware] if prometheus is not None else []), limits],
        logging_config=None,  # adapters/logs.py configures logging, once per process
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(
            title="modelyard",
            version=__version__,
            path="/docs",
            render_plugins=[ScalarRenderPlugin()],
        ),
    )
    app.limits = limits
    return app


def _routes(edge: Edge) -> list[Any]:
    """Every route of the API but MCP's: each management router behind its key's guard."""
    managed = ManagementGuard(edge.key_cache)
    management: list[Any] = [
        InstancesController, DeploymentsController, InferenceMetricsController, FinanceController,
        InstanceWebhooksController, DeploymentWebhooksController, PublicMediaController, UploadsController,
    ]  # fmt: skip
    if edge.low_balance is not None:
        management += [LowBalancePolicyController, DeploymentLowBalanceController]
    if edge.routing is not None:
        management.append(ProvidersController)
    if edge.access is not None:
        management += [
            CatalogController, KeysController, DeploymentPermissions, InstancePermissions, OrgsController,
            UsageController,
        ]  # fmt: skip
    routes: list[Any] = [
        HealthController,
        Router(path="/", route_handlers=management, guards=[managed]),
        GatewayController,
        DeploymentChatController,
        AnthropicController,
        MediaController,
    ]
    if edge.routing is not None:
        routes.append(RoutedChatController)
    if edge.access is not None:
        operator = OperatorGuard(edge.key_cache)
        routes.append(Router(path="/", route_handlers=[CreditsController], guards=[operator]))
    if edge.metrics is not None:
        routes.append(MetricsController)
    return routes


def _dependencies(edge: Edge) -> dict[str, Provide]:
    """What handlers declare by name, each one object built by the composition root."""
    return {
        "instances": _constant(edge.instances),
        # Not "deployments": Litestar takes a body field's decoding error for a broken dependency
        # (a 500) when the field is named like one, and a key's body lists ``deployments``.
        "fleet": _constant(edge.deployments),
        "observability": _constant(edge.observability),
        "gateway": _constant(edge.gateway),
        "finance": _constant(edge.finance),
        "workers_health": _constant(edge.workers_health),
        "api_metrics": _constant(edge.metrics),
        "routing": _constant(edge.routing),
        "webhooks": _constant(edge.webhooks),
        "media": _constant(edge.media),
        "uploads": _constant(edge.uploads),
        "access": _constant(edge.access),
        "low_balance": _constant(edge.low_balance),
        "tokens": _constant(TokenLimits(edge.limiter, edge.plan_limits)),
    }
