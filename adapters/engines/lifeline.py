"""A replica's lifeline to the process that started it: when that process is gone, so is the replica.

The server names itself on the replica's command line (``--parent-pid``), because a replica
that asked ``getppid()`` only once its interpreter had started would learn the name of
whoever adopted it if the server had died meanwhile. A replica then:

- asks Linux to send it SIGTERM when its parent dies (``PR_SET_PDEATHSIG``, kept across
  ``exec``), and then checks that its parent is still the one named: a server that died
  before the request took effect is caught here, and the replica exits before serving;
- checks again every second from a watchdog thread (the only guard off Linux, and a second
  one on it), stopping itself with SIGTERM and, if that does not end it, exiting outright.

``python -m modelyard.adapters.engines.lifeline --parent-pid N -- COMMAND...`` does the
first for an engine whose command line we do not own (vLLM), then becomes COMMAND.
This module imports nothing heavy: it runs before a replica loads anything.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
import threading
import time

LIFELINE_MODULE = "modelyard.adapters.engines.lifeline"
# The environment variable that hands our replica server its token.
TOKEN_VARIABLE = "MODELYARD_REPLICA_TOKEN"  # noqa: S105 - a variable's name, not its value
# A replica whose parent is gone exits with this status.
PARENT_GONE = 3
# How often the watchdog looks: an orphan lives a second at most when the kernel's signal missed.
CHECK_INTERVAL_S = 1.0
# After SIGTERM to itself, this long for a clean shutdown before the watchdog exits outright.
STOP_GRACE_S = 5.0
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("modelyard.adapters.engines.lifeline")


def parent_gone(parent_pid: int) -> bool:
    """Whether the process that started this one is gone (this one was re-parented)."""
    return os.getppid() != parent_pid


def hold(parent_pid: int) -> None:
    """Die with ``parent_pid``; exit now if it is already gone.

    Called first thing, before anything is served: exiting here leaves nothing behind.
    """
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # After the request, not before: a parent that died in between is caught here.
    if parent_gone(parent_pid):
        os._exit(PARENT_GONE)


def watch(parent_pid: int) -> threading.Thread:
    """Start the watchdog thread that stops this process once ``parent_pid`` is gone."""

    def run() -> None:
        while not parent_gone(parent_pid):
            time.sleep(CHECK_INTERVAL_S)
        log.warning("the server that started this replica (pid %d) is gone; stopping", parent_pid)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(STOP_GRACE_S)
        os._exit(PARENT_GONE)

    thread = threading.Thread(target=run, name="lifeline", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> None:
    """Hold on to the parent, then become the command after ``--``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" not in args:
        raise SystemExit("usage: lifeline --parent-pid N -- COMMAND [ARG...]")
    split = args.index("--")
    parser = argparse.ArgumentParser(prog="lifeline")
    parser.add_argument("--parent-pid", type=int, required=True)
    options = parser.parse_args(args[:split])
    command = args[split + 1 :]
    if not command:
        raise SystemExit("lifeline: no command after --")
    hold(options.parent_pid)
    os.execvp(command[0], command)  # noqa: S606 - the replica's own command line, built by its engine


if __name__ == "__main__":
    main()
