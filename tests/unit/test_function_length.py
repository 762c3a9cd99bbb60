"""Functions stay short enough to read at a glance: none in include/, plugins/ or dags/ runs past 80 lines.

Migrations are exempt (a migration is a list of DDL statements, read top to bottom once). Split a long
function into named steps (claim -> check -> record -> end) rather than raising the limit.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 80


def long_functions(base: Path, folders: list[str], limit: int = MAX_LINES) -> list[str]:
    """`path:line name (n lines)` of every function longer than `limit` lines under base/folder."""
    found = []
    for folder in folders:
        for path in sorted((base / folder).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > limit:
                        found.append(f"{path.relative_to(base)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_longer_than_80_lines() -> None:
    assert long_functions(ROOT, ["include", "plugins", "dags"]) == []


def test_the_check_finds_a_long_function(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "pkg" / "long.py").write_text(f"def long() -> None:\n{body}\n")
    (tmp_path / "pkg" / "short.py").write_text("def short() -> None:\n    pass\n")
    assert long_functions(tmp_path, ["pkg"]) == [f"pkg/long.py:1 long ({MAX_LINES + 1} lines)"]
