"""The layer rules of DESIGN.md §2 hold, and the check really catches a breach."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("domain", "projections", "adapters", "api", "workers", "kernels")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy_package(target: Path) -> Path:
    package = target / "modelyard"
    shutil.copytree(
        ROOT,
        package,
        ignore=lambda folder, names: [
            n for n in names if n.startswith(".") or n in {"tests", "build", "bench", "__pycache__"}
        ],
    )
    return package


def _lint(package: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(package.parent)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=package.parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_project_keeps_its_contracts(tmp_path: Path) -> None:
    result = _lint(_copy_package(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_domain_importing_adapters_breaks_the_check(tmp_path: Path) -> None:
    package = _copy_package(tmp_path)
    breach = package / "domain" / "breach.py"
    breach.write_text("import modelyard.adapters.services.process  # noqa\n")
    result = _lint(package)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert "modelyard.domain.breach -> modelyard.adapters" in result.stdout


def test_domain_reading_the_clock_through_time_breaks_the_check(tmp_path: Path) -> None:
    package = _copy_package(tmp_path)
    (package / "domain" / "clock.py").write_text("import time\n\nNOW = time.time\n")
    result = _lint(package)
    assert result.returncode != 0
    assert "the domain is pure" in result.stdout
