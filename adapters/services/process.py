"""Small helpers the local services share: running commands, waiting, pid files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class ServiceError(RuntimeError):
    """A local service could not be installed, started or reached."""


def run(cmd: Sequence[str], *, user: str | None = None, env: dict[str, str] | None = None) -> str:
    """Run ``cmd`` to completion (as ``user`` when given) and return its stdout."""
    full = ["runuser", "-u", user, "--", *cmd] if user else list(cmd)
    proc = subprocess.run(full, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise ServiceError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def is_root() -> bool:
    """Whether this process may install packages and switch users."""
    return os.geteuid() == 0


def apt_install(*packages: str) -> None:
    """Install Debian packages; only root can, so anyone else gets a clear instruction."""
    if not is_root():
        raise ServiceError(f"missing {', '.join(packages)}: run `apt-get install {' '.join(packages)}`")
    if shutil.which("apt-get") is None:
        raise ServiceError(f"missing {', '.join(packages)} and no apt-get to install them with")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], env=env)


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll ``check`` until it holds; a service that never gets there is an error."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} not ready after {timeout:.0f} s")
        # Services come up in hundreds of milliseconds to seconds: poll often, cheaply.
        time.sleep(0.2)


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in ``pid_file`` if that process still lives."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def terminate(pid: int, *, timeout: float = 30.0) -> None:
    """SIGTERM ``pid``, wait for it to go, SIGKILL it if it will not."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our own child, or it would linger as a zombie that kill(0) sees.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
