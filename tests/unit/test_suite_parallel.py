"""The suite's parallel run (tests/conftest.py): under `--dist loadgroup` the tests marked `airflow_stack`,
whatever their module, run on one worker and before anything else there; every other module runs whole on
one worker. Checked on a small suite of its own, run by a real pytest with two xdist workers."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
REPORTED = re.compile(r"^\[(gw\d+)\] \[ *\d+%\] PASSED (\S+)", re.MULTILINE)


def test_airflow_stack_tests_share_one_worker_and_other_modules_stay_whole(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # xdist alone (-p xdist): a quicker start
    pytester.makeconftest(
        "from tests.conftest import pytest_collection_modifyitems, pytest_xdist_make_scheduler\n"
    )
    stack = "import pytest\n\npytestmark = pytest.mark.airflow_stack\n\n"
    pytester.makepyfile(
        test_plain_a="\n".join(f"def test_a{i}(): pass" for i in range(4)),
        test_stack_b=stack + "\n".join(f"def test_b{i}(): pass" for i in range(2)),
        test_mixed_c="import pytest\n\n@pytest.mark.airflow_stack\ndef test_c_stack(): pass\n\n"
        + "\n".join(f"def test_c{i}(): pass" for i in range(3)),
        test_plain_d="\n".join(f"def test_d{i}(): pass" for i in range(4)),
    )
    result = pytester.runpytest_subprocess("-p", "xdist", "-n", "2", "--dist", "loadgroup", "-v")
    result.assert_outcomes(passed=14)

    ran: dict[str, list[str]] = defaultdict(list)  # worker -> the tests it ran, in order
    for worker, nodeid in REPORTED.findall(result.stdout.str()):
        ran[worker].append(nodeid)
    stack_tests = {"test_stack_b.py::test_b0@airflow_stack", "test_stack_b.py::test_b1@airflow_stack",
                   "test_mixed_c.py::test_c_stack@airflow_stack"}
    stack_workers = [worker for worker, tests in ran.items() if stack_tests & set(tests)]
    assert len(stack_workers) == 1, f"the airflow_stack tests were not grouped on one worker: {dict(ran)}"
    assert set(ran[stack_workers[0]][:3]) == stack_tests, ran
    for module in ("test_plain_a.py", "test_mixed_c.py::test_c", "test_plain_d.py"):
        workers = {worker for worker, tests in ran.items() for test in tests
                   if test.startswith(module) and "@" not in test}
        assert len(workers) == 1, (module, ran)
