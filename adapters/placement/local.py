"""Local placement: replicas as child processes on free loopback ports of this host.

Each replica is started from its engine's command line, waited on until ``/health``
answers, watched through its process (an exited process is a dead replica), replaced with
a fresh process of the same spec, and stopped by terminate-then-kill with the process
reaped, so no zombie or orphan outlives its deployment.

Each start draws a fresh token (``secrets``), handed to the process in its environment and
kept on the handle; the replica refuses calls without it. The replica is told this
process's pid and gives up when it is gone (``engines.lifeline``), so a server killed
outright leaves no replica behind. A replica's log (``NAME.log``, rotated by the replica)
goes with it when it is stopped. ``heartbeat`` leaves the time this placement last saw its
replicas in the log folder, so the next process can say when they were lost.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from modelyard.adapters.engines.base import Launch, PlacementError, ReplicaHandle, ReplicaSpec
from modelyard.adapters.engines.models import has_gpu
from modelyard.adapters.engines.registry import engine_for
from modelyard.adapters.placement.base import start_all
from modelyard.adapters.views.db import private_dir

__all__ = ["LocalPlacement", "PlacementError", "ReplicaHandle"]

# A replica that ignores SIGTERM this long is killed: long enough to finish a token, short
# enough that a teardown never hangs on a stuck generation.
STOP_GRACE_S = 10.0
# Health polls are cheap loopback calls; ten a second makes a start return promptly.
HEALTH_POLL_S = 0.1
# The file whose modification time says when this host's placement last saw its replicas.
HEARTBEAT = "placement.alive"
# How much of a dead replica's log the server's own log quotes, to say why it died.
TAIL_LINES = 5

log = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(handle: ReplicaHandle) -> bool:
    spec = handle.spec
    engine = engine_for(spec.engine) if spec else None
    path = engine.health_path if engine else "/health"
    try:
        return httpx.get(f"{handle.base_url}{path}", headers=handle.headers, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - 4096))
            lines = file.read().decode(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(lines[-TAIL_LINES:])


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()


class LocalPlacement:
    """Starts, watches and stops replica processes on this host; logs go to ``log_dir``."""

    def __init__(self, log_dir: Path, *, gpu: bool | None = None) -> None:
        self._log_dir = log_dir
        self._gpu = has_gpu() if gpu is None else gpu
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._handles: dict[str, list[ReplicaHandle]] = {}
        self._lock = threading.Lock()
        self._counter = 0

    def start(self, spec: ReplicaSpec, name: str, *, deployment: str = "") -> ReplicaHandle:
        """Start one replica called ``name`` and return once it answers its health check."""
        engine = engine_for(spec.engine)
        if engine.needs_gpu and not self._gpu:
            raise PlacementError(
                f"{spec.model} runs on the {engine.name} engine, which needs a CUDA GPU; this host has none."
            )
        # Only a process needs a port of this host and a token; an upstream has its address and key.
        runs_here = engine.command(spec) is not None
        bound = spec.on_port(_free_port()) if runs_here and not spec.port else spec
        token = secrets.token_urlsafe(32) if runs_here else ""
        launch = Launch(parent_pid=os.getpid(), log_file=str(self.log_path(name)))
        command = engine.command(bound, launch)
        proc = None if command is None else self._spawn(command, name, engine.environment(token))
        handle = ReplicaHandle(
            name=name,
            base_url=engine.base_url(bound),
            pid=None if proc is None else proc.pid,
            deployment=deployment,
            spec=spec,
            token=token,
        )
        self._wait_healthy(handle, proc, engine.start_timeout_s)
        with self._lock:
            self._handles.setdefault(deployment, []).append(handle)
        return handle

    def log_path(self, name: str) -> Path:
        """Where the replica called ``name`` logs (older, rotated files add ``.1``, ``.2``)."""
        return self._log_dir / f"{name}.log"

    def _spawn(self, command: list[str], name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        private_dir(self._log_dir)
        # Until the replica's own rotating log is set up, its output (an import error, a bad
        # argument) lands in the same file, so a failed start can be read there.
        with self.log_path(name).open("ab") as out:
            proc = subprocess.Popen(
                command, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=os.environ | env
            )
        with self._lock:
            self._procs[proc.pid] = proc
        return proc

    def _wait_healthy(
        self, handle: ReplicaHandle, proc: subprocess.Popen[bytes] | None, timeout_s: float
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not _healthy(handle):
            exited = proc is not None and proc.poll() is not None
            if exited or time.monotonic() > deadline:
                self.stop(handle)
                why = "exited" if exited else f"did not answer /health within {timeout_s:.0f} s"
                # The log goes with the replica; stop() quoted its end in this process's log.
                raise PlacementError(f"replica {handle.name} {why}")
            time.sleep(HEALTH_POLL_S)

    def start_many(self, deployment: str, spec: ReplicaSpec, count: int) -> list[ReplicaHandle]:
        """Start ``count`` replicas of ``spec`` for ``deployment``; all start or none stays."""
        return start_all(self, spec, (self._next_name(deployment) for _ in range(count)), deployment)

    def _next_name(self, deployment: str) -> str:
        with self._lock:
            self._counter += 1
            return f"{deployment or 'replica'}-r{self._counter}"

    def replicas(self, deployment: str) -> list[ReplicaHandle]:
        """The replicas this placement holds for ``deployment``, in start order."""
        with self._lock:
            return list(self._handles.get(deployment, []))

    def alive(self, handle: ReplicaHandle) -> bool:
        """Whether the replica's process still runs (an upstream: whether it answers /health)."""
        if handle.pid is None:
            return _healthy(handle)
        with self._lock:
            proc = self._procs.get(handle.pid)
        return proc is not None and proc.poll() is None

    def dead(self, deployment: str) -> list[ReplicaHandle]:
        """The replicas of ``deployment`` that are gone; each is marked unhealthy."""
        gone = [handle for handle in self.replicas(deployment) if not self.alive(handle)]
        for handle in gone:
            handle.healthy = False
        return gone

    def replace(self, handle: ReplicaHandle) -> ReplicaHandle:
        """Stop what is left of ``handle`` and start a fresh replica of the same spec."""
        if handle.spec is None:
            raise PlacementError(f"replica {handle.name} has no spec to start again from")
        self.stop(handle)
        return self.start(handle.spec, self._next_name(handle.deployment), deployment=handle.deployment)

    def stop(self, handle: ReplicaHandle) -> None:
        """Terminate the replica, reap its process, forget it, and remove its log.

        A replica that had already exited on its own is reported first, with the end of its
        log, since its log goes with it.
        """
        handle.healthy = False
        proc = self._forget(handle)
        if proc is not None and proc.poll() is not None:
            log.warning("replica %s exited with status %s; its log ended: %s",
                        handle.name, proc.returncode, _tail(self.log_path(handle.name)))  # fmt: skip
        if proc is not None:
            _reap(proc)
        self._remove_log(handle.name)

    def _forget(self, handle: ReplicaHandle) -> subprocess.Popen[bytes] | None:
        with self._lock:
            held = self._handles.get(handle.deployment, [])
            if handle in held:
                held.remove(handle)
            return self._procs.pop(handle.pid, None) if handle.pid is not None else None

    def _remove_log(self, name: str) -> None:
        for path in self._log_dir.glob(f"{name}.log*"):
            path.unlink(missing_ok=True)

    def stop_deployment(self, deployment: str) -> None:
        """Stop every replica of ``deployment``."""
        for handle in self.replicas(deployment):
            self.stop(handle)

    def stop_all(self) -> None:
        """Stop every replica this placement started, including ones started outside a
        deployment: all are asked to stop at once, then each is reaped and its log removed."""
        with self._lock:
            procs = list(self._procs.values())
            names = [handle.name for held in self._handles.values() for handle in held]
            self._procs.clear()
            self._handles.clear()
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            _reap(proc)
        for name in names:
            self._remove_log(name)

    def sweep(self) -> None:
        """Remove the logs of replicas this placement does not hold (a previous process's)."""
        with self._lock:
            held = {handle.name for handles in self._handles.values() for handle in handles}
        for path in self._log_dir.glob("*.log*"):
            if path.name.split(".log", 1)[0] not in held:
                path.unlink(missing_ok=True)

    def heartbeat(self) -> None:
        """Record that this placement's replicas were seen now."""
        private_dir(self._log_dir)
        (self._log_dir / HEARTBEAT).touch()

    def last_heartbeat(self) -> datetime | None:
        """When a placement over this folder last saw its replicas (None if never)."""
        try:
            return datetime.fromtimestamp((self._log_dir / HEARTBEAT).stat().st_mtime, UTC)
        except FileNotFoundError:
            return None
