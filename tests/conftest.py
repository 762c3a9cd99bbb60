"""Shared test set-up. Fixture modules live in tests/fixtures/ (one per area) and are loaded here.

The suite runs on pytest-xdist workers (`make test`: two, `--dist loadgroup`). Each worker is a pytest
session of its own: its session fixtures (tests/fixtures/stack.py) start its own PostgreSQL cluster, S3 server
and APS emulator on free ports, with their files under the worker's own temporary folder.

A test module is the unit of work a worker gets (its module fixtures are built once), except for the tests
marked `airflow_stack`: each of their modules starts a real Airflow (minutes, and most of a core while it
runs), so they all form one unit (xdist group `airflow_stack`) that runs on one worker, one module after the
other, and only one Airflow stack runs at a time. That unit is the longest, so it is handed out first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadGroupScheduling
from xdist.workermanage import WorkerController

# Fixture modules import each other's helpers: their asserts are rewritten whichever is imported first.
pytest.register_assert_rewrite("tests.fixtures")

pytest_plugins = [
    "pytester",  # runs small suites of its own in tests of the suite's set-up
    *sorted(
        f"tests.fixtures.{path.stem}"
        for path in (Path(__file__).parent / "fixtures").glob("*.py")
        if path.stem != "__init__"
    ),
]

# The xdist group of the tests marked `airflow_stack`.
AIRFLOW_STACK_GROUP = "airflow_stack"


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> Iterator[None]:
    """The tests marked `airflow_stack` go in one xdist group.

    xdist's worker names a grouped test `<id>@<group>` for the scheduler to read; with pytest 9.2 its renaming
    no longer takes (pytest-xdist#1386, open), so it is done here after xdist's hook when it has not been."""
    marked = [item for item in items if item.get_closest_marker("airflow_stack") is not None]
    for item in marked:
        item.add_marker(pytest.mark.xdist_group(AIRFLOW_STACK_GROUP))
    yield
    if getattr(config.option, "loadgroup", False):  # set on xdist's workers under --dist loadgroup
        suffix = f"@{AIRFLOW_STACK_GROUP}"
        for item in marked:
            if not item.nodeid.endswith(suffix):
                item._id = type(item._id).parse(item.nodeid + suffix)


class ModulesAndGroups(LoadGroupScheduling):
    """`--dist loadgroup` with a test module as the unit of work for the tests outside a group."""

    def _split_scope(self, nodeid: str) -> str:
        group = super()._split_scope(nodeid)
        return group if group != nodeid else nodeid.split("::", 1)[0]

    def _assign_work_unit(self, node: WorkerController) -> None:
        if AIRFLOW_STACK_GROUP in self.workqueue:
            self.workqueue.move_to_end(AIRFLOW_STACK_GROUP, last=False)
        super()._assign_work_unit(node)


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # before xdist's own choice
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> ModulesAndGroups | None:
    return ModulesAndGroups(config, log) if config.getvalue("dist") == "loadgroup" else None
