"""The local stack fails fast, with an install hint, when a prerequisite is missing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aps_devstack.postgres import MissingPrerequisite, _find_binary


def test_missing_postgres_binary_names_the_fix() -> None:
    with pytest.raises(MissingPrerequisite, match=r"apt-get install postgresql") as excinfo:
        _find_binary("initdb-that-is-not-installed")
    assert "initdb-that-is-not-installed" in str(excinfo.value)


def test_demo_stops_at_once_without_postgres_binaries(tmp_path) -> None:
    # Simulate a machine without PostgreSQL: every binary lookup fails. The demo must exit 2 with the hint.
    script = """
import sys
from pathlib import Path
import aps_devstack.postgres as pg

def missing(name):
    raise pg.MissingPrerequisite(f"`{name}` not found. {pg.INSTALL_HINT}")

pg._find_binary = missing
from aps_devstack import demo
sys.exit(demo.run_demo(Path(sys.argv[1])))
"""
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "demo")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "`initdb` not found" in result.stdout
    assert "apt-get install postgresql" in result.stdout
