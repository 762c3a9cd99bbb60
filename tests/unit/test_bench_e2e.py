"""bench/e2e.py's machine-readable last line (the lead's scripts parse it), and its CPU accounting."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "e2e.py"


@pytest.fixture(scope="module")
def e2e() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_e2e", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_the_line_names_files_both_times_and_the_ratio_to_the_concurrent_floor(e2e: ModuleType) -> None:
    line = e2e.e2e_line(1000, 412.345, 300.0)
    assert line == "e2e: files=1000 pipeline_s=412.3 concurrent_floor_s=300.0 ratio=1.37"


def test_the_ratio_has_two_decimals_whatever_the_times(e2e: ModuleType) -> None:
    assert e2e.e2e_line(30, 90.0, 45.0).endswith(" ratio=2.00")
    assert e2e.e2e_line(30, 10.0, 30.0).endswith(" ratio=0.33")


def test_cpu_of_a_process_tree_counts_the_children_that_already_ended(e2e: ModuleType) -> None:
    # A child of a child burns CPU and ends: its time must still be in the tree's figure (bench/e2e.py's task
    # processes end long before the run does, and are reaped by the worker that started them).
    burn = "import time; end = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys; "
        f"subprocess.run([sys.executable, '-c', {burn!r}], check=True); "
        "print('done', flush=True); sys.stdin.read()"  # alive (its reaped child counted) until stdin closes
    )], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "done"
        assert e2e.tree_cpu_seconds(parent.pid) >= 0.3  # the parent alone used a few hundredths
    finally:
        parent.kill()
        parent.wait()
