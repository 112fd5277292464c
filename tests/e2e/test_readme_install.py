"""The README's own install line, alone, gives a working server.

The line is read from README.md and run as written, in a copy of this working tree's
files (what a clone holds: tracked and not ignored, no .venv, no build output), so the
new virtual environment has only what ``pip install -e '.[cpu]'`` puts there: nothing
from the test extra, nothing from the environment running the tests. pip's cache may
serve the packages. Then ``modelyard serve`` from that environment answers ``/health``
and provisions ``smollm2-135m`` over HTTP until it runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import free_port, wait_healthy

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
# Installing the dependencies into a new environment, from pip's cache or the registry.
INSTALL_TIMEOUT_S = 900


def readme_install_line() -> tuple[str, str]:
    """The README's quickstart line, split into its install part and its serve command."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^python3 -m venv .*modelyard serve$", text, re.MULTILINE)
    assert match, "README.md has no `python3 -m venv … modelyard serve` line"
    *install, serve = match[0].split(" && ")
    assert serve == ".venv/bin/modelyard serve", serve
    return " && ".join(install), serve


def copy_of_the_clone(target: Path) -> Path:
    """The files a clone of this working tree would have: tracked or untracked-but-not-ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not copied
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def clean_env() -> dict[str, str]:
    """This environment without anything pointing at the test run's own packages or settings."""
    dropped = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV")
    return {
        k: v
        for k, v in os.environ.items()
        if k not in dropped and not k.startswith(("MODELYARD_", "POSTGRES_"))
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone with the README's install line run in it; its ``.venv/bin`` folder."""
    clone = copy_of_the_clone(tmp_path_factory.mktemp("clone"))
    install, _ = readme_install_line()
    result = subprocess.run(
        ["bash", "-c", install],
        cwd=clone,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return clone / ".venv" / "bin"


@pytest.fixture
def served(installed: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``modelyard serve`` from the new environment, with a funded account: (URL, key)."""
    env = clean_env() | {"MODELYARD_DATA_DIR": str(tmp_path / "data"), "MODELYARD_PORT": str(free_port())}
    created = subprocess.run(
        [installed / "modelyard", "accounts", "create", "--name", "readme", "--credits", "5"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    key = dict(line.split(": ", 1) for line in created.stdout.splitlines())["api_key"]
    log = tmp_path / "serve.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [installed / "modelyard", "serve"], cwd=tmp_path, env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{env['MODELYARD_PORT']}"
    try:
        wait_healthy(url, proc, log)
        yield url, key
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_the_readme_install_line_alone_serves_and_provisions(served: tuple[str, str]) -> None:
    url, key = served
    health = httpx.get(f"{url}/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        answer = client.post("/v1/provision", json={"model": "smollm2-135m"})
        assert answer.status_code == 201, answer.text
        instance = answer.json()["data"]["instance"]
        deadline = time.monotonic() + 180
        while instance["status"] == "provisioning":
            assert time.monotonic() < deadline, instance
            time.sleep(0.5)
            instance = client.get(f"/v1/instances/{instance['id']}").json()["data"]["instance"]
        assert instance["status"] == "running", instance
        assert client.delete(f"/v1/instances/{instance['id']}").status_code == 200
