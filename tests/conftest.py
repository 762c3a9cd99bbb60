"""Shared test set-up: which fixtures a test sees, and how the suite runs in parallel.

Fixtures live in tests/fixtures/, one module per area, and come in two kinds:

- The worker's services and one-offs, loaded here for every test (GLOBAL_FIXTURE_MODULES): the session-scoped
  fixtures (PostgreSQL, the S3 server and the emulators in stack.py, an Airflow in airflow.py, the OpenAPI
  specs, the official SDK) and the autouse token cache. pytest starts a session fixture once per module that
  holds it, so these are never imported into a test module (tests/unit/test_fixture_imports.py says so).
- Everything else is imported by the test module that uses it, so a reader sees where a fixture comes
  from: `from tests.fixtures.api import api, results_db`. ruff's F401/F811 are off under tests/ for that (a
  fixture is used as a parameter, which pyflakes reads as an unused import redefined). The fixtures an
  imported fixture needs in turn (`api` needs `start_api`, `api_settings`, ...) are not imported too: a test
  module sees every fixture of the fixture modules it imports from (`FixtureModule` below).

tests/unit/test_fixture_imports.py fails, naming the import line to add, when a test module uses a fixture
that is neither defined in it, nor imported into it, nor global (pytest's own, a plugin's, or the above).

The suite runs on pytest-xdist workers (`make test`: two, `--dist loadgroup`). Each worker is a pytest
session of its own: its session fixtures (tests/fixtures/stack.py) start its own PostgreSQL cluster, S3 server
and APS emulator on free ports, with their files under the worker's own temporary folder.

A test module is the unit of work a worker gets (its module fixtures are built once), except for the tests
marked `airflow_stack`: each of their modules starts a real Airflow (minutes, and most of a core while it
runs), so they all form one unit (xdist group `airflow_stack`) that runs on one worker, one module after the
other, and only one Airflow stack runs at a time. That unit is the longest, so it is handed out first.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadGroupScheduling
from xdist.workermanage import WorkerController

# Fixture modules import each other's helpers: their asserts are rewritten whichever is imported first.
pytest.register_assert_rewrite("tests.fixtures")

# The fixture modules every test sees (see above); the others are imported where they are used.
GLOBAL_FIXTURE_MODULES = [
    "tests.fixtures.airflow",
    "tests.fixtures.aps_spec",
    "tests.fixtures.official_sdk",
    "tests.fixtures.stack",
    "tests.fixtures.token_cache",
]
pytest_plugins = [
    "pytester",  # runs small suites of its own in tests of the suite's set-up
    *GLOBAL_FIXTURE_MODULES,
]
FIXTURES_PACKAGE = "tests.fixtures"


def imported_fixture_modules(module: ModuleType) -> list[ModuleType]:
    """The fixture modules (not global) that `module` imports from, and those they import from in turn."""
    found: dict[str, ModuleType] = {}
    pending = [module]
    while pending:
        for value in list(vars(pending.pop()).values()):
            home = getattr(value, "__module__", None)
            if (isinstance(home, str) and home.startswith(f"{FIXTURES_PACKAGE}.")
                    and home not in GLOBAL_FIXTURE_MODULES and home not in found):
                found[home] = sys.modules[home]
                pending.append(found[home])
    return list(found.values())


class FixtureModule(pytest.Module):
    """A test module that also sees every fixture of the fixture modules it imports from."""

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        for fixtures in imported_fixture_modules(self.obj):
            # Registered for this module alone: its own fixtures, registered after, still win.
            self.session._fixturemanager.parsefactories(holder=fixtures, node=self)
        return super().collect()


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module:
    return FixtureModule.from_parent(parent, path=module_path)


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
