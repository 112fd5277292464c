"""A local Ray node: a head (``ray start --head``) or a worker joining one, for tests and trials.

Each node is ``ray start --block`` in a session of its own, run with this interpreter so its
workers import the product (a replica actor starts ``python -m modelyard...``). ``down``
ends that session: the node's raylet, its workers and the replicas they supervise. The
node advertises the custom resources it is given (``{"gpu_type:h100": 1}``, a region), which
is how the ``ray`` placement chooses nodes. Ray gives a node the machine's own address, not
loopback, even on one machine: that is the address replicas are reached at.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from modelyard.adapters.services.process import ServiceError, read_pid, wait_until

DEFAULT_PORT = 56379
# A node of a trial or a test stays small: the machine runs the product and its tests too.
OBJECT_STORE_BYTES = 100 * 1024 * 1024
# How long ``down`` lets a node's processes go on SIGTERM before they are killed.
STOP_GRACE_S = 15.0
# Between tries of a node that ``ray start`` refused (the head still holding its old self).
RESTART_PAUSE_S = 5.0
# What ``ray start`` prints once the node runs.
STARTED = "Ray runtime started"


@dataclass(frozen=True)
class LocalRay:
    """One Ray node under ``root``: a head on ``port`` or, given ``head``, a worker joining it.

    ``resources`` are the custom resources it advertises; ``environment`` adds variables to
    its processes (a head reads Ray's own settings from ``RAY_*`` ones); ``num_cpus`` is what
    it offers replicas.
    """

    root: Path
    port: int = DEFAULT_PORT
    head: str = ""
    num_cpus: int = 2
    resources: dict[str, float] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    # Where a head keeps its session (sockets, logs); None: Ray's own default. Kept short: a
    # socket's path has a length limit.
    temp_dir: Path | None = None

    @property
    def address(self) -> str:
        """The head's GCS address, which drivers and workers join."""
        return self.head or f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The variables the product's settings read to place replicas on this cluster."""
        return {"MODELYARD_PLACEMENT": "ray", "MODELYARD_RAY_ADDRESS": self.address}

    def up(self, timeout: float = 180.0) -> None:
        """Start the node (unless it runs) and wait until the cluster counts it.

        A node started again right after it was lost can be refused while the head still
        holds the old one (``ray start`` exits): it is tried again, a few seconds apart.
        """
        if read_pid(self._pid_file) is not None and self.is_ready():
            return
        deadline = time.monotonic() + timeout
        while True:
            proc = self._start()
            wait_until(
                functools.partial(self._ready_or_exited, proc),
                timeout=max(1.0, deadline - time.monotonic()),
                what="Ray node",
            )
            if proc.poll() is None:
                break
            if time.monotonic() + RESTART_PAUSE_S > deadline:
                raise ServiceError(f"the Ray node exited ({proc.returncode}); see {self._log}")
            time.sleep(RESTART_PAUSE_S)
        # The node's own "started" comes before the cluster counts it (and its resources):
        # a node restarted after a loss is placed on only once ``ray status`` lists them.
        wait_until(
            self._counted, timeout=max(1.0, deadline - time.monotonic()), what="the Ray node's resources"
        )

    def _ready_or_exited(self, proc: subprocess.Popen[bytes]) -> bool:
        return self.is_ready() or proc.poll() is not None

    def _start(self) -> subprocess.Popen[bytes]:
        self.root.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--disable-usage-stats",
            f"--num-cpus={self.num_cpus}", f"--object-store-memory={OBJECT_STORE_BYTES}",
            f"--resources={json.dumps(self.resources)}",
        ]  # fmt: skip
        if self.head:
            command += [f"--address={self.head}"]
        else:
            command += ["--head", f"--port={self.port}", "--include-dashboard=false"]
            if self.temp_dir is not None:
                command += [f"--temp-dir={self.temp_dir}"]
        # A fresh log each start: readiness is read from it.
        with self._log.open("wb") as log:
            proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=os.environ | self.environment,
                start_new_session=True,
            )
        self._pid_file.write_text(str(proc.pid))
        return proc

    def _counted(self) -> bool:
        """Whether the cluster's status lists every custom resource this node advertises."""
        if not self.resources:
            return True
        status = subprocess.run(
            [sys.executable, "-m", "ray.scripts.scripts", "status", f"--address={self.address}"],
            capture_output=True, text=True, timeout=60, check=False, env=os.environ | self.environment,
        )  # fmt: skip
        return status.returncode == 0 and all(f" {name}" in status.stdout for name in self.resources)

    def is_ready(self) -> bool:
        """Whether the node runs and has said so, and the head's GCS answers."""
        if read_pid(self._pid_file) is None:
            return False
        try:
            socket.create_connection(_host_port(self.address), timeout=2).close()
        except OSError:
            return False
        try:
            return STARTED in self._log.read_text(errors="replace")
        except FileNotFoundError:
            return False

    def down(self) -> None:
        """End the node's session: its raylet, workers and the replicas they supervise."""
        pid = read_pid(self._pid_file)
        if pid is not None:
            _end_group(pid)
        self._pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """End the node at once, as a lost machine would (SIGKILL to its whole session)."""
        pid = read_pid(self._pid_file)
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)
            _reap(pid)
        self._pid_file.unlink(missing_ok=True)

    @property
    def _pid_file(self) -> Path:
        return self.root / "node.pid"

    @property
    def _log(self) -> Path:
        return self.root / "node.log"


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def _end_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and _group_alive(pid):
        _reap(pid)
        time.sleep(0.2)
    if _group_alive(pid):
        os.killpg(pid, signal.SIGKILL)
    _reap(pid)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # not our child: its own parent reaps it
        os.waitpid(pid, os.WNOHANG)
