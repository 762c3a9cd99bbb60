"""Every module of the project's packages imports: a rename that left an importer behind fails here, not in
a running api-server (plugin modules are imported only by the Airflow component that needs them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Modules that act when imported: `python -m` entry points and Alembic's environment script.
ACTS_ON_IMPORT = {"__main__.py", "env.py"}

_IMPORT_ALL = r"""
import importlib, sys
failed = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print("".join(f"\nIMPORT-FAILED {line}" for line in failed))
"""


def _modules() -> list[str]:
    names = []
    for top in ("include", "plugins"):
        for path in sorted((ROOT / top).rglob("aps_*/**/*.py")):
            if path.name in ACTS_ON_IMPORT or "migrations/versions" in path.as_posix():
                continue
            parts = path.relative_to(ROOT / top).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(set(names))


def test_every_module_imports() -> None:
    modules = _modules()
    assert {"aps_run_page.web", "aps_client.transport"} <= set(modules)  # the walk found the tree
    # In a fresh interpreter, so nothing this test session imported first hides a missing import.
    result = subprocess.run([sys.executable, "-c", _IMPORT_ALL, *modules], capture_output=True, text=True,
                            timeout=300, check=True)
    failed = [line for line in result.stdout.splitlines() if line.startswith("IMPORT-FAILED ")]
    assert failed == []
