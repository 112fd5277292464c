"""A throwaway PostgreSQL cluster from Debian's packages, on a loopback port of its own."""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

import psycopg

from modelyard.adapters.services.process import ServiceError, apt_install, is_root, run, wait_until

DEFAULT_PORT = 55432
USER = "modelyard"
DBNAME = "modelyard"
# initdb and the server refuse to run as root; Debian's package creates this user.
SYSTEM_USER = "postgres"


@dataclass(frozen=True)
class LocalPostgres:
    """One cluster under ``root`` listening on 127.0.0.1:``port`` with trust auth."""

    root: Path
    port: int = DEFAULT_PORT

    @property
    def home(self) -> Path:
        """Where the cluster lives: under ``root``, unless the server's user cannot reach it.

        As root, the server runs as ``postgres``, which cannot enter a checkout under a
        private home folder; the cluster then lives in that user's own home, in a folder
        named after ``root`` so each checkout keeps its own.
        """
        existing = next(folder for folder in (self.root, *self.root.parents) if folder.exists())
        if not is_root() or _reachable_by(SYSTEM_USER, existing):
            return self.root
        try:
            own = Path(pwd.getpwnam(SYSTEM_USER).pw_dir)
        except KeyError:  # not installed yet: nothing lives anywhere
            return self.root
        return own / "modelyard" / hashlib.sha256(str(self.root).encode()).hexdigest()[:12]

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def conninfo(self) -> str:
        """The libpq connection string of the project's database."""
        return f"host=127.0.0.1 port={self.port} user={USER} dbname={DBNAME}"

    def env(self) -> dict[str, str]:
        """The variables the product's settings read to use this cluster."""
        return {
            "MODELYARD_STORE": "postgres",
            "POSTGRES_HOST": "127.0.0.1",
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_DBNAME": DBNAME,
            "POSTGRES_USER": USER,
            "POSTGRES_PASSWORD": "",
        }

    def up(self) -> None:
        """Install, initialise and start as needed; afterwards the database answers."""
        if self.is_ready():
            return
        bindir = _bindir()
        user = SYSTEM_USER if is_root() else None
        home = self.home
        home.mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(home, user)
        if not (self.data_dir / "PG_VERSION").exists():
            run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    USER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ],
                user=user,
            )
        options = f"-p {self.port} -k {home} -c listen_addresses=127.0.0.1"
        run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-o",
                options,
                "-l",
                str(home / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            user=user,
        )
        wait_until(self._accepts, timeout=60, what="PostgreSQL")
        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DBNAME]).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{DBNAME}"')

    def down(self) -> None:
        """Stop the server if it runs; the cluster's files stay for the next ``up``."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        user = SYSTEM_USER if is_root() else None
        run([str(_bindir() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"], user=user)

    def is_ready(self) -> bool:
        """Whether the project's database answers a query."""
        try:
            with psycopg.connect(self.conninfo, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def _accepts(self) -> bool:
        try:
            with psycopg.connect(self._conninfo("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _conninfo(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={USER} dbname={dbname}"


def _reachable_by(user: str, folder: Path) -> bool:
    """Whether ``user`` can enter ``folder`` (and so create the cluster below it)."""
    try:
        run(["test", "-x", str(folder)], user=user)
    except ServiceError:
        return False
    return True


def _bindir() -> Path:
    found = _find_bindir()
    if found is None:
        apt_install("postgresql")
        found = _find_bindir()
    if found is None:
        raise ServiceError("PostgreSQL's initdb not found even after installing postgresql")
    return found


def _find_bindir() -> Path | None:
    on_path = shutil.which("initdb")
    if on_path:
        return Path(os.path.realpath(on_path)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None
