"""Local placement: replicas as child processes on loopback ports of this host."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import msgspec

from modelyard.adapters.engines.models import PlacementError, ReplicaSpec

# A llama.cpp replica loads a small model in a second or two; a cold disk may take longer.
START_TIMEOUT_S = 120.0


class ReplicaHandle(msgspec.Struct, kw_only=True):
    """One running replica: its name, where it answers, and its process."""

    name: str
    base_url: str
    pid: int
    in_flight: int = 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command(spec: ReplicaSpec, port: int) -> list[str]:
    if spec.engine == "vllm":
        from modelyard.adapters.engines.vllm_args import vllm_command

        return vllm_command(spec.model, port=port)
    command = [
        sys.executable,
        "-m",
        "modelyard.adapters.engines.replica",
        "--backend",
        spec.engine,
        "--model",
        spec.model,
        "--port",
        str(port),
        "--context-window",
        str(spec.context_window),
    ]
    if spec.path:
        command += ["--path", spec.path]
    if spec.engine == "simulated":
        command += ["--ttft-ms", str(spec.ttft_ms), "--tokens-per-s", str(spec.tokens_per_s)]
    return command


class LocalPlacement:
    """Starts, watches and stops replica processes on this host."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, spec: ReplicaSpec, name: str) -> ReplicaHandle:
        """Start one replica and wait until it answers its health check."""
        port = _free_port()
        self._log_dir.mkdir(parents=True, exist_ok=True)
        log = (self._log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(_command(spec, port), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        handle = ReplicaHandle(name=name, base_url=f"http://127.0.0.1:{port}", pid=proc.pid)
        self._procs[proc.pid] = proc
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._healthy(handle):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop(handle)
                raise PlacementError(f"replica {name} of {spec.model} did not start (see {log.name})")
            time.sleep(0.1)
        return handle

    def _healthy(self, handle: ReplicaHandle) -> bool:
        try:
            return httpx.get(f"{handle.base_url}/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def alive(self, handle: ReplicaHandle) -> bool:
        """Whether the replica's process still runs."""
        proc = self._procs.get(handle.pid)
        return proc is not None and proc.poll() is None

    def stop(self, handle: ReplicaHandle) -> None:
        """Terminate the replica and reap its process."""
        proc = self._procs.pop(handle.pid, None)
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        """Stop every replica this placement started."""
        for pid in list(self._procs):
            proc = self._procs.pop(pid)
            proc.terminate()
            proc.wait(timeout=10)
