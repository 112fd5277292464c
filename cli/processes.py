"""Long-running processes: ``serve`` (everything in one), ``api`` and ``worker`` (cluster)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import click
import msgspec
import uvicorn

from modelyard.api.app import create_app, open_backend
from modelyard.api.backend import Backend
from modelyard.settings import Settings, SettingsError, load_settings
from modelyard.workers.meter import Meter, start_meter
from modelyard.workers.reconciler import ReconcilerWorker
from modelyard.workers.relay import RelayWorker
from modelyard.workers.views import ViewsWorker

WORKERS = ("relay", "views", "meter", "reconciler")


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc


@contextmanager
def running_workers(settings: Settings, names: tuple[str, ...], backend: Backend) -> Iterator[None]:
    """Start the named workers in this process and stop them on the way out."""
    yard, views = backend.yard, backend.views
    with ExitStack() as stack:
        if "relay" in names and settings.uses_kafka:
            relay = RelayWorker(settings, yard, views)
            relay.start()
            stack.callback(relay.stop)
        if "views" in names:
            projections = ViewsWorker(settings, yard, views)
            projections.start()
            stack.callback(projections.stop)
        if "meter" in names:
            meter = start_meter(Meter(yard, views))
            stack.callback(meter.stop)
        if "reconciler" in names:
            reconciler = ReconcilerWorker(settings, yard, views)
            reconciler.start()
            stack.callback(reconciler.stop)
        yield


@contextmanager
def opened_backend(settings: Settings) -> Iterator[Backend]:
    """The store and views of this process, closed on the way out."""
    backend = open_backend(settings)
    try:
        yield backend
    finally:
        backend.yard.close()
        backend.views.close()


def _serve_api(settings: Settings, backend: Backend | None = None) -> None:
    # Uvicorn's access log stays off: api/access_log.py writes the one line per request (with
    # its request id). log_config=None: uvicorn's records go through configure_logging's handler.
    uvicorn.run(
        create_app(settings, backend),
        host=settings.host,
        port=settings.port,
        log_level=settings.log.level.lower(),
        log_config=None,
        access_log=False,
    )


def _listen(settings: Settings, host: str | None, port: int | None) -> Settings:
    """The settings with the command line's address, so the endpoints it hands out are right."""
    chosen: Settings = msgspec.structs.replace(
        settings, host=host or settings.host, port=port if port is not None else settings.port
    )
    return chosen


@click.command()
@click.option("--host", default=None, help="Address to listen on (MODELYARD_HOST).")
@click.option("--port", default=None, type=int, help="Port to listen on (MODELYARD_PORT).")
def serve(host: str | None, port: int | None) -> None:
    """Run the whole product in one process on the embedded default."""
    settings = _listen(_settings(), host, port)
    with opened_backend(settings) as backend, running_workers(settings, WORKERS, backend):
        _serve_api(settings, backend)


@click.command()
@click.option("--host", default=None, help="Address to listen on (MODELYARD_HOST).")
@click.option("--port", default=None, type=int, help="Port to listen on (MODELYARD_PORT).")
def api(host: str | None, port: int | None) -> None:
    """Run an API process (cluster mode: several may run behind a balancer)."""
    _serve_api(_listen(_settings(), host, port))


@click.command()
@click.argument("names", nargs=-1, type=click.Choice([*WORKERS, "all"]))
def worker(names: tuple[str, ...]) -> None:
    """Run workers (relay, views, meter, or all) until interrupted."""
    chosen = WORKERS if not names or "all" in names else names
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    settings = _settings()
    with opened_backend(settings) as backend, running_workers(settings, chosen, backend):
        click.echo(f"workers running: {', '.join(chosen)}", err=True)
        stop.wait()
