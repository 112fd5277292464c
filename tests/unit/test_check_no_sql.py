"""scripts/check_no_sql.py: SQL text in api/, workers/ or cli/ fails the build; prose does not."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_no_sql", ROOT / "scripts" / "check_no_sql.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _plant(root: Path, folder: str, source: str) -> None:
    (root / folder).mkdir(parents=True, exist_ok=True)
    (root / folder / "planted.py").write_text(source, encoding="utf-8")


@pytest.mark.parametrize(
    ("folder", "source"),
    [
        ("api", 'def f(tx):\n    return tx.execute("SELECT state FROM deployments WHERE id = %s", [1])\n'),
        ("workers", 'Q = (\n    "INSERT INTO ledger (position)"\n    " VALUES (%s)"\n)\n'),
        ("api", 'def f(tx, t):\n    tx.execute(f"DELETE FROM {t}")\n'),
        ("workers", 'S = """\nCREATE TABLE IF NOT EXISTS x (\n    id TEXT\n)\n"""\n'),
        ("cli", 'U = "UPDATE balances SET exhausted = 1"\n'),
    ],
)
def test_a_planted_statement_fails_the_check(tmp_path: Path, folder: str, source: str) -> None:
    check = _check()
    _plant(tmp_path, folder, source)
    found = check.offences(tmp_path)
    assert len(found) == 1
    assert found[0].startswith(f"{folder}/planted.py:")
    assert check.main([str(tmp_path)]) == 1


def test_prose_and_http_verbs_are_not_sql(tmp_path: Path) -> None:
    check = _check()
    _plant(
        tmp_path,
        "api",
        '"""Select an instance, update its scale, delete it."""\n'
        'METHOD = "DELETE"\n'
        'HELP = "Create a table of prices from the catalog."\n',
    )
    assert check.offences(tmp_path) == []
    assert check.main([str(tmp_path)]) == 0


def test_a_statement_outside_the_checked_folders_is_allowed(tmp_path: Path) -> None:
    check = _check()
    _plant(tmp_path, "projections", 'Q = "SELECT id FROM deployments"\n')
    _plant(tmp_path, "api", "X = 1\n")
    assert check.offences(tmp_path) == []


def test_the_repository_passes() -> None:
    assert _check().offences(ROOT) == []
