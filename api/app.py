"""The composition root of the HTTP edge: ``create_app`` builds the Litestar app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from litestar import Litestar
from litestar.handlers import asgi
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.types import Receive, Scope, Send

from modelyard import __version__
from modelyard.adapters.eventstore.env import open_yard
from modelyard.adapters.ratelimit.limiter import InProcessRateLimiter, PostgresRateLimiter, RateLimiter
from modelyard.adapters.views.db import PostgresViews, open_views
from modelyard.api import idempotency
from modelyard.api.access_log import AccessLog
from modelyard.api.auth import KeyCache
from modelyard.api.backend import Backend
from modelyard.api.errors import handle_exception
from modelyard.api.gateway.controller import GatewayController
from modelyard.api.gateway.forwarder import Forwarder
from modelyard.api.gateway.usage import UsageWriter
from modelyard.api.health.controller import HealthController
from modelyard.api.instances import secrets
from modelyard.api.instances.controller import InstancesController
from modelyard.api.mcp import build_mcp
from modelyard.api.ratelimit import RateLimitMiddleware
from modelyard.settings import Settings


def open_backend(settings: Settings) -> Backend:
    """The store, views and limits of the configured mode (the API process opens its own)."""
    views = open_views(settings)
    limiter: RateLimiter = (
        PostgresRateLimiter(views.pool) if isinstance(views, PostgresViews) else InProcessRateLimiter()
    )
    return Backend(settings=settings, yard=open_yard(settings), views=views, limiter=limiter)


def create_app(settings: Settings, backend: Backend | None = None) -> Litestar:
    """Build the API; with no ``backend`` it opens one when it starts and closes it after."""
    mcp_server, mcp_app = build_mcp(settings.base_url)

    @asgi("/mcp", is_mount=True, copy_scope=True)
    async def mcp_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await mcp_app(scope, receive, send)  # type: ignore[arg-type]  # Starlette's looser ASGI types

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        own = backend is None
        active = open_backend(settings) if backend is None else backend
        active.views.ensure([*secrets.SCHEMA, *idempotency.SCHEMA])
        app.state.backend = active
        app.state.key_cache = KeyCache(active.views)
        app.state.forwarder = Forwarder(active.views)
        app.state.usage = UsageWriter(active)
        try:
            async with mcp_server.session_manager.run(), anyio.create_task_group() as tasks:
                tasks.start_soon(app.state.usage.run)
                yield
                app.state.usage.stop()
        finally:
            await app.state.forwarder.close()
            if own:
                active.yard.close()
                active.views.close()

    return Litestar(
        route_handlers=[HealthController, InstancesController, GatewayController, mcp_endpoint],
        exception_handlers={Exception: handle_exception},
        middleware=[AccessLog, RateLimitMiddleware()],
        logging_config=None,  # adapters/logs.py configures logging, once per process
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(
            title="modelyard",
            version=__version__,
            path="/docs",
            render_plugins=[ScalarRenderPlugin()],
        ),
    )
