"""A replica gives up when its server is gone, and its log stays within its bound.

Real processes throughout: a replica started for a parent that is already gone, a server
killed outright with its replicas running, the watchdog on its own, and a replica's log
written past its bound.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from modelyard.adapters.engines.base import Launch, ReplicaSpec
from modelyard.adapters.engines.lifeline import PARENT_GONE, TOKEN_VARIABLE
from modelyard.adapters.engines.registry import engine_for
from modelyard.adapters.engines.replica import LOG_BACKUPS, LOG_MAX_BYTES

pytestmark = pytest.mark.integration


def _gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs (exited and reaped, or a zombie nobody reaped yet)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := [pid for pid in pids if not _gone(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def test_a_replica_whose_server_is_gone_before_it_starts_exits_without_serving(tmp_path: Path) -> None:
    spec = ReplicaSpec(model="sim", engine="simulated", port=1)  # never bound: it must not get that far
    launch = Launch(parent_pid=_dead_pid(), log_file=str(tmp_path / "orphan.log"))
    command = engine_for("simulated").command(spec, launch)
    env = os.environ | engine_for("simulated").environment("t0ken")
    replica = subprocess.run(command, env=env, capture_output=True, timeout=60, check=False)
    assert replica.returncode == PARENT_GONE, replica.stderr.decode()[-2000:]


SERVER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from modelyard.adapters.engines.base import ReplicaSpec
    from modelyard.adapters.placement.local import LocalPlacement

    placement = LocalPlacement(Path(sys.argv[1]), gpu=False)
    handles = placement.start_many("dep", ReplicaSpec(model="sim", engine="simulated"), 2)
    print(" ".join(str(handle.pid) for handle in handles), flush=True)
    time.sleep(600)
    """
)


def test_replicas_go_when_their_server_is_killed_outright(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert server.stdout is not None
        pids = [int(pid) for pid in server.stdout.readline().split()]
        assert len(pids) == 2
        assert not any(_gone(pid) for pid in pids)
    finally:
        server.kill()
        server.wait()
    assert _wait_gone(pids, timeout=15) == []


def test_the_watchdog_alone_stops_a_process_whose_parent_is_not_the_one_named() -> None:
    # Named parent 1 (init), real parent this test: the watchdog finds them different.
    script = "import time\nfrom modelyard.adapters.engines import lifeline\nlifeline.watch(1)\ntime.sleep(60)"
    watched = subprocess.Popen([sys.executable, "-c", script])
    assert watched.wait(timeout=20) == -signal.SIGTERM


WRITER = textwrap.dedent(
    """
    import logging, os, sys, time
    from modelyard.adapters.engines.replica import log_to

    log_to(sys.argv[1], "INFO")
    print("a line on standard output", flush=True)
    os.write(2, b"a line a C library wrote\\n")
    line = "x" * 200
    for _ in range(int(sys.argv[2])):
        logging.getLogger("modelyard.test").info(line)
    time.sleep(0.5)  # the relay of standard output is a daemon thread
    """
)


def test_a_replicas_log_rotates_within_its_bound(tmp_path: Path) -> None:
    path = tmp_path / "r.log"
    lines = 4 * (LOG_MAX_BYTES // 250)  # four files' worth
    subprocess.run([sys.executable, "-c", WRITER, str(path), str(lines)], check=True, timeout=120)
    files = sorted(tmp_path.glob("r.log*"))
    assert len(files) == 1 + LOG_BACKUPS
    assert all(file.stat().st_size <= LOG_MAX_BYTES for file in files)
    # The newest lines are in the current file; the oldest ones were dropped, not kept.
    assert "modelyard.test" in path.read_text()
    assert sum(file.stat().st_size for file in files) < lines * 200


def test_output_before_and_after_logging_is_set_up_lands_in_the_log(tmp_path: Path) -> None:
    path = tmp_path / "r.log"
    subprocess.run([sys.executable, "-c", WRITER, str(path), "3"], check=True, timeout=120)
    text = path.read_text()
    assert "a line on standard output" in text
    assert "a line a C library wrote" in text
    assert TOKEN_VARIABLE not in text
