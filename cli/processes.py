"""Long-running processes: ``serve`` (everything in one), ``api`` and ``worker`` (cluster)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import click
import uvicorn

from modelyard.adapters.eventstore.env import open_yard
from modelyard.adapters.views.db import open_views
from modelyard.api.app import create_app
from modelyard.settings import Settings, SettingsError, load_settings
from modelyard.workers.meter import Meter, start_meter
from modelyard.workers.relay import RelayWorker
from modelyard.workers.views import ViewsWorker

WORKERS = ("relay", "views", "meter")


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc


@contextmanager
def running_workers(settings: Settings, names: tuple[str, ...]) -> Iterator[None]:
    """Start the named workers in this process and stop them on the way out."""
    with ExitStack() as stack:
        yard = open_yard(settings)
        stack.callback(yard.close)
        views = open_views(settings)
        stack.callback(views.close)
        if "relay" in names and settings.uses_kafka:
            relay = RelayWorker(settings, yard, views)
            relay.start()
            stack.callback(relay.stop)
        if "views" in names:
            projections = ViewsWorker(settings, yard, views)
            projections.start()
            stack.callback(projections.stop)
        if "meter" in names:
            scheduler = start_meter(Meter(yard, views))
            stack.callback(scheduler.shutdown)
        yield


def _serve_api(settings: Settings, host: str | None, port: int | None) -> None:
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port if port is not None else settings.port,
        log_level="info",
    )


@click.command()
@click.option("--host", default=None, help="Address to listen on (MODELYARD_HOST).")
@click.option("--port", default=None, type=int, help="Port to listen on (MODELYARD_PORT).")
def serve(host: str | None, port: int | None) -> None:
    """Run the whole product in one process on the embedded default."""
    settings = _settings()
    with running_workers(settings, WORKERS):
        _serve_api(settings, host, port)


@click.command()
@click.option("--host", default=None, help="Address to listen on (MODELYARD_HOST).")
@click.option("--port", default=None, type=int, help="Port to listen on (MODELYARD_PORT).")
def api(host: str | None, port: int | None) -> None:
    """Run an API process (cluster mode: several may run behind a balancer)."""
    _serve_api(_settings(), host, port)


@click.command()
@click.argument("names", nargs=-1, type=click.Choice([*WORKERS, "all"]))
def worker(names: tuple[str, ...]) -> None:
    """Run workers (relay, views, meter, or all) until interrupted."""
    chosen = WORKERS if not names or "all" in names else names
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with running_workers(_settings(), chosen):
        click.echo(f"workers running: {', '.join(chosen)}", err=True)
        stop.wait()
