"""The composition root of the HTTP edge: ``create_app`` builds the Litestar app."""

from __future__ import annotations

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin

from modelyard import __version__
from modelyard.api.errors import handle_exception
from modelyard.api.health.controller import HealthController
from modelyard.settings import Settings


def create_app(settings: Settings) -> Litestar:
    """Build the API for ``settings``; nothing is opened until the app starts."""
    app = Litestar(
        route_handlers=[HealthController],
        exception_handlers={Exception: handle_exception},
        openapi_config=OpenAPIConfig(
            title="modelyard",
            version=__version__,
            path="/docs",
            render_plugins=[ScalarRenderPlugin()],
        ),
    )
    app.state.settings = settings
    return app
