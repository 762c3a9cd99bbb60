"""Every fixture a test module uses is defined in it, imported into it, or global (tests/conftest.py).

A test module imports the fixtures it uses from tests/fixtures/<area>.py; only pytest's own, the plugins'
and the global fixture modules' fixtures need no import. A new test file written for fixtures loaded
everywhere fails here, with the import line to add. The modules are read, not run: a test function's or a
fixture's parameters (less those a parametrize mark gives), `usefixtures` marks and `getfixturevalue("...")`
calls are what a module uses.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import FIXTURES_PACKAGE, GLOBAL_FIXTURE_MODULES

TESTS = Path(__file__).resolve().parents[1]
FIXTURES = TESTS / "fixtures"
Function = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class Fixture:
    name: str
    module: str  # tests.fixtures.<area>
    scope: str
    autouse: bool


def _fixture_decorator(function: Function) -> ast.expr | None:
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr == "fixture":
            return decorator
    return None


def _keyword(decorator: ast.expr, name: str) -> object:
    if isinstance(decorator, ast.Call):
        for keyword in decorator.keywords:
            if keyword.arg == name and isinstance(keyword.value, ast.Constant):
                return keyword.value.value
    return None


def fixtures_defined(tree: ast.Module, module: str) -> Iterator[Fixture]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            decorator = _fixture_decorator(node)
            if decorator is not None:
                name = _keyword(decorator, "name")
                yield Fixture(str(name or node.name), module, str(_keyword(decorator, "scope") or "function"),
                              bool(_keyword(decorator, "autouse")))


def fixture_index() -> dict[str, Fixture]:
    """Every fixture tests/fixtures/ defines, by name."""
    index: dict[str, Fixture] = {}
    for path in sorted(FIXTURES.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for fixture in fixtures_defined(tree, f"{FIXTURES_PACKAGE}.{path.stem}"):
            index[fixture.name] = fixture
    return index


def _strings(node: ast.expr) -> list[str]:
    """The names in a parametrize argnames ("a, b", ["a", "b"]) or the strings of a usefixtures call."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [part.strip() for part in node.value.split(",") if part.strip()]
    if isinstance(node, ast.List | ast.Tuple):
        return [name for element in node.elts for name in _strings(element)]
    return []


def _parametrized(decorators: list[ast.expr], function: Function | None = None) -> set[str]:
    """The names parametrize marks give, and (with `function`) the parameters Hypothesis' `@given` fills:
    positional strategies fill the last parameters, keyword ones their names."""
    names: set[str] = set()
    for decorator in decorators:
        if (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
                and decorator.func.attr == "parametrize" and decorator.args):
            names.update(_strings(decorator.args[0]))
        if (function is not None and isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Name)
                and decorator.func.id == "given"):
            parameters = [arg.arg for arg in function.args.args]
            names.update(parameters[len(parameters) - len(decorator.args):] if decorator.args else [])
            names.update(keyword.arg for keyword in decorator.keywords if keyword.arg)
    return names


def _requesting_functions(tree: ast.Module) -> Iterator[tuple[Function, set[str]]]:
    """Tests and fixtures, with the names parametrize marks give them (on them or on their class)."""
    for node in tree.body:
        functions = [(node, set[str]())]
        if isinstance(node, ast.ClassDef):
            given = _parametrized(node.decorator_list)
            functions = [(item, given) for item in node.body]
        for function, given in functions:
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if function.name.startswith("test") or _fixture_decorator(function) is not None:
                yield function, given | _parametrized(function.decorator_list, function)


def fixtures_used(tree: ast.Module) -> dict[str, int]:
    """Fixture name -> the first line that uses it."""
    used: dict[str, int] = {}
    for function, given in _requesting_functions(tree):
        arguments = function.args
        positional = arguments.posonlyargs + arguments.args
        with_default = {a.arg for a in positional[len(positional) - len(arguments.defaults):]} if \
            arguments.defaults else set()
        with_default |= {a.arg for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True) if d}
        for argument in positional + arguments.kwonlyargs:
            name = argument.arg
            if name not in ("self", "cls") and name not in given and name not in with_default:
                used.setdefault(name, argument.lineno)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "usefixtures":
                for argument in node.args:
                    for name in _strings(argument):
                        used.setdefault(name, node.lineno)
            elif node.func.attr == "getfixturevalue" and node.args:
                for name in _strings(node.args[0]):
                    used.setdefault(name, node.lineno)
    return used


def module_names(tree: ast.Module) -> dict[str, str | None]:
    """Names bound at the module's top level -> the module they are imported from (None: defined here)."""
    names: dict[str, str | None] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                names[alias.asname or alias.name] = node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.partition(".")[0]] = alias.name
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[node.name] = None
        elif isinstance(node, ast.Assign):
            names.update({target.id: None for target in node.targets if isinstance(target, ast.Name)})
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = None
    return names


def fixture_problems(path: str, source: str, is_global: Callable[[str], bool],
                     index: dict[str, Fixture]) -> list[str]:
    """What is wrong with the fixtures of the test module at `path` (empty: nothing)."""
    tree = ast.parse(source, path)
    names = module_names(tree)
    problems = []
    for name, line in sorted(fixtures_used(tree).items()):
        if name in names or is_global(name):
            continue
        home = index.get(name)
        fix = f"add `from {home.module} import {name}`" if home else "no module in tests/fixtures/ defines it"
        problems.append(f"{path}:{line}: uses fixture `{name}`, which it neither defines nor imports: {fix}")
    for name, source_module in sorted(names.items(), key=lambda item: item[0]):
        fixture = index.get(name)
        if fixture is not None and source_module == fixture.module in GLOBAL_FIXTURE_MODULES:
            problems.append(f"{path}: imports fixture `{name}` from {fixture.module}, which every test sees "
                            "already (tests/conftest.py); a module's own copy of a session fixture starts "
                            "it again")
    return problems


@pytest.fixture
def is_global(request: pytest.FixtureRequest) -> Callable[[str], bool]:
    """Whether a fixture is visible to every test: pytest's own, a plugin's or a global fixture module's."""
    manager = request.session._fixturemanager
    # `request` itself is no registered fixture: pytest gives it to every test.
    return lambda name: name == "request" or bool(manager.getfixturedefs(name, request.session))


def test_every_test_module_imports_the_fixtures_it_uses(is_global: Callable[[str], bool]) -> None:
    index = fixture_index()
    problems = [
        problem
        for path in sorted(TESTS.rglob("test_*.py"))
        for problem in fixture_problems(str(path.relative_to(TESTS.parent)), path.read_text(), is_global,
                                        index)
    ]
    assert not problems, "\n".join(problems)


def test_a_fixture_used_but_not_imported_is_named_with_the_line_to_add(
    is_global: Callable[[str], bool],
) -> None:
    source = (
        "import pytest\n"
        "from tests.fixtures.results import results_engine\n\n"
        "@pytest.fixture\n"
        "def mine(tmp_path, landing_pipeline): ...\n\n"
        "@pytest.mark.usefixtures('aps_conn')\n"
        "@pytest.mark.parametrize('size', [1, 2])\n"
        "def test_it(mine, api, results_engine, emulator, size, monkeypatch, worker_id, nowhere): ...\n"
    )
    problems = fixture_problems("tests/integration/test_new.py", source, is_global, fixture_index())
    unknown = "which it neither defines nor imports"
    assert problems == [
        f"tests/integration/test_new.py:9: uses fixture `api`, {unknown}: "
        "add `from tests.fixtures.api import api`",
        f"tests/integration/test_new.py:7: uses fixture `aps_conn`, {unknown}: "
        "add `from tests.fixtures.provider import aps_conn`",
        f"tests/integration/test_new.py:5: uses fixture `landing_pipeline`, {unknown}: "
        "add `from tests.fixtures.pipeline import landing_pipeline`",
        f"tests/integration/test_new.py:9: uses fixture `nowhere`, {unknown}: "
        "no module in tests/fixtures/ defines it",
    ]


def test_a_global_fixture_imported_into_a_test_module_is_refused(is_global: Callable[[str], bool]) -> None:
    source = "from tests.fixtures.stack import postgres\n\ndef test_it(postgres): ...\n"
    (problem,) = fixture_problems("tests/integration/test_new.py", source, is_global, fixture_index())
    assert "imports fixture `postgres` from tests.fixtures.stack, which every test sees already" in problem


def test_session_and_autouse_fixtures_live_in_the_global_fixture_modules() -> None:
    misplaced = [f"{fixture.module}.{fixture.name} (scope {fixture.scope}, autouse {fixture.autouse})"
                 for fixture in fixture_index().values()
                 if (fixture.scope == "session" or fixture.autouse)
                 and fixture.module not in GLOBAL_FIXTURE_MODULES]
    assert not misplaced, f"load their modules in tests/conftest.py's GLOBAL_FIXTURE_MODULES: {misplaced}"
    for module in GLOBAL_FIXTURE_MODULES:
        importlib.import_module(module)  # each names a module that exists
