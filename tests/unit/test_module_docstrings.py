"""Every module of the project's packages (and the DAG files) opens with a line that says what it is for."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_module_says_what_it_is_for() -> None:
    modules = [p for top in ("include", "plugins", "dags") for p in sorted((ROOT / top).rglob("*.py"))]
    assert len(modules) > 100  # the walk found the tree
    silent = [str(p.relative_to(ROOT)) for p in modules
              if not (ast.get_docstring(ast.parse(p.read_text())) or "").strip()]
    assert silent == []
