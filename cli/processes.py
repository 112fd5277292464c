"""Long-running processes: ``serve`` (everything in one), ``api`` and ``worker`` (cluster).

Each command reads the settings and asks the composition root (``cli/compose.py``) for
what it runs; nothing is opened or built here.
"""

from __future__ import annotations

import signal
import threading

import click
import msgspec
import uvicorn
from litestar import Litestar

from modelyard.cli.compose import WORKERS, build_api, build_workers, opened_core, running
from modelyard.settings import Settings, SettingsError, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _unwind_on_sigterm() -> None:
    """Make SIGTERM unwind this process: workers stopped (the reconciler stops its replicas
    and records their losses), stores closed. Uvicorn shuts down on SIGTERM and then raises
    it again once it returns; with the default action that second one killed the process
    before any of that ran."""
    signal.signal(signal.SIGTERM, _terminated)


def _serve_api(app: Litestar, settings: Settings) -> None:
    # Uvicorn's access log stays off: api/access_log.py writes the one line per request (with
    # its request id). log_config=None: uvicorn's records go through configure_logging's handler.
    uvicorn.run(
        app,
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
    _unwind_on_sigterm()
    with opened_core(settings) as core:
        workers = build_workers(core, WORKERS)
        with running(workers):
            _serve_api(build_api(core, workers), settings)


@click.command()
@click.option("--host", default=None, help="Address to listen on (MODELYARD_HOST).")
@click.option("--port", default=None, type=int, help="Port to listen on (MODELYARD_PORT).")
def api(host: str | None, port: int | None) -> None:
    """Run an API process (cluster mode: several may run behind a balancer)."""
    settings = _listen(_settings(), host, port)
    _unwind_on_sigterm()
    with opened_core(settings) as core:
        _serve_api(build_api(core), settings)


@click.command()
@click.argument("names", nargs=-1, type=click.Choice([*WORKERS, "all"]))
def worker(names: tuple[str, ...]) -> None:
    """Run workers (relay, views, meter, reconciler, janitor, autoscaler, sla, webhooks,
    balance_guard, or all) until interrupted."""
    chosen = WORKERS if not names or "all" in names else names
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with opened_core(_settings()) as core, running(build_workers(core, chosen)):
        click.echo(f"workers running: {', '.join(chosen)}", err=True)
        stop.wait()
