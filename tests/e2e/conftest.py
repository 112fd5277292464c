"""Running modelyard processes for end-to-end tests, started as a user would start them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

MODELYARD = str(Path(sys.executable).with_name("modelyard"))


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    """Block until ``url/health`` answers; fail with the process's log if it died."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            out = log.read_text(errors="replace")
            raise AssertionError(f"process exited {proc.returncode}:\n{out[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not come up"
        time.sleep(0.2)


@dataclass
class Yard:
    """A running modelyard and a funded account on it."""

    env: dict[str, str]
    cwd: Path
    urls: list[str]
    key: str = ""
    key_id: str = ""
    account: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [MODELYARD, *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def fund(self, usd: str) -> None:
        out = self.cli("accounts", "create", "--name", "agent", "--credits", usd).stdout
        lines = dict(line.split(": ", 1) for line in out.splitlines())
        self.account, self.key, self.key_id = lines["account_id"], lines["api_key"], lines["key_id"]

    def await_key(self, timeout: float = 150) -> int:
        """Wait until the API knows the key (views follow the store, through Kafka in cluster
        mode); returns how many requests the key's rate limit counted: the one that got
        through (those refused with 401 count against the client's address, not the key)."""
        deadline = time.monotonic() + timeout
        while True:
            answer = httpx.get(f"{self.urls[0]}/v1/balance", headers={"Authorization": f"Bearer {self.key}"})
            if answer.status_code != 401:
                return 1
            assert time.monotonic() < deadline, "the new key never reached the API's views"
            time.sleep(0.2)

    def start(self, *args: str, port: int | None = None) -> str:
        env = dict(self.env)
        if port is not None:
            env["MODELYARD_PORT"] = str(port)
        # Into a file, not a pipe: nobody reads a pipe while the test runs, and a server
        # logging a line per request would block once the pipe's buffer filled.
        log = self.cwd / f"{args[0]}-{len(self.procs)}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen([MODELYARD, *args], env=env, cwd=self.cwd, stdout=out, stderr=out)
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}" if port is not None else ""
        if port is not None:
            try:
                wait_healthy(url, proc, log)
            except BaseException:
                self.stop()  # what this yard started must not outlive a failed start
                raise
            self.urls.append(url)
        return url

    def start_cluster(self, usd: str = "5.00") -> None:
        """Cluster mode: every worker in one process and two API processes, the account funded
        and its key known to both."""
        self.start("worker", "all")
        self.start("api", port=free_port())
        self.start("api", port=free_port())
        self.fund(usd)
        self.await_key()

    def __enter__(self) -> Yard:
        return self

    def __exit__(self, *_: object) -> None:
        """Stop what was started, whether the block ended or failed: a fixture whose set-up
        fails must not leave servers and workers running (and polling) under the next tests."""
        self.stop()

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Yard]:
    """``modelyard serve`` on the embedded default (SQLite, notification log, llama.cpp)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "POSTGRES_"))}
    yard = Yard(env=env | {"MODELYARD_DATA_DIR": str(tmp_path / "data")}, cwd=tmp_path, urls=[])
    with yard:
        yard.fund("5.00")
        yard.start("serve", port=free_port())
        yield yard


@pytest.fixture
def simulated(tmp_path: Path) -> Iterator[Yard]:
    """``modelyard serve`` with the simulated engine (control-plane tests: fast, deterministic)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "POSTGRES_"))}
    yard = Yard(
        env=env | {"MODELYARD_DATA_DIR": str(tmp_path / "data"), "MODELYARD_ENGINE": "simulated"},
        cwd=tmp_path,
        urls=[],
    )
    with yard:
        yard.fund("5.00")
        yard.start("serve", port=free_port())
        yield yard
