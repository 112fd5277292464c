#!/usr/bin/env python3
"""Fail when SQL text appears where it does not belong: in the API, the workers, the CLI.

SQL lives beside the views it reads (``projections/*/queries.py``) and in the adapters
(``adapters/views``, ``adapters/state``). This walks the Python files under the given
folders (by default ``api``, ``workers`` and ``cli``), reads every string literal (f-strings'
literal parts, and implicitly joined literals, as one), and reports each that holds an SQL
statement. Prose is not SQL: only the uppercase keywords in a statement's shape count.

Usage: ``python scripts/check_no_sql.py [ROOT] [FOLDER ...]``; exits 1 with the places found.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

FOLDERS = ("api", "workers", "cli")
STATEMENT = re.compile(
    r"\bSELECT\s+(?:DISTINCT\s+)?[\w*(]"
    r"|\bINSERT\s+INTO\b"
    r"|\bUPDATE\s+\w+\s+SET\b"
    r"|\bDELETE\s+FROM\b"
    r"|\b(?:CREATE|DROP|ALTER)\s+(?:UNIQUE\s+)?(?:TABLE|INDEX|SCHEMA|VIEW)\b"
    r"|\bTRUNCATE\s+(?:TABLE\s+)?\w"
    r"|\bCOPY\s+\w+.*\bFROM\s+STDIN\b"
)


def _literals(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Every string literal of a module with its line; an f-string's literal parts joined."""
    inside_fstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = [v.value if isinstance(v, ast.Constant) else " x " for v in node.values]
            inside_fstrings.update(id(v) for v in node.values)
            yield node.lineno, "".join(str(p) for p in parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in inside_fstrings:
            yield node.lineno, node.value


def offences(root: Path, folders: tuple[str, ...] = FOLDERS) -> list[str]:
    """``path:line: text`` for each string literal holding an SQL statement under ``folders``."""
    found = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for line, text in _literals(tree):
                if STATEMENT.search(text):
                    snippet = " ".join(text.split())[:80]
                    found.append(f"{path.relative_to(root)}:{line}: {snippet}")
    return found


def main(argv: list[str]) -> int:
    """Check the repository (or ``argv[0]``) and print what was found."""
    root = Path(argv[0]) if argv else Path(__file__).resolve().parents[1]
    folders = tuple(argv[1:]) or FOLDERS
    found = offences(root, folders)
    for place in found:
        print(place, file=sys.stderr)
    if found:
        print(
            f"{len(found)} SQL statement(s) outside the queries modules and adapters: "
            "move them next to the view they read (projections/<view>/queries.py).",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
