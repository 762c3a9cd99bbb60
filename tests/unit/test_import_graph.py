"""No import circles among the project's packages (every `aps_*` package under include/ and plugins/), and
no import along a forbidden edge (`FORBIDDEN`: the provider knows only APS, the client knows no Airflow, a
service module imports no route module).

The graph is read from the source (AST), not from what happens to be imported at run time, so imports
inside functions and under `if TYPE_CHECKING:` count too: a circle hidden in a function is still a circle.
`from pkg import name` is an edge to `pkg.name` when that is a module, else to `pkg`; the implicit import
of a parent package's `__init__` is not an edge (every submodule would otherwise close a loop with it).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = (ROOT / "include", ROOT / "plugins")


def discover_modules(source_dirs: tuple[Path, ...] = SOURCE_DIRS) -> dict[str, Path]:
    """Dotted module name -> file, for every module of every aps_* package."""
    modules: dict[str, Path] = {}
    for source_dir in source_dirs:
        for package in sorted(source_dir.glob("aps_*/__init__.py")):
            for path in sorted(package.parent.rglob("*.py")):
                parts = list(path.relative_to(source_dir).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                modules[".".join(parts)] = path
    return modules


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, target] if target else base)


def _known_prefix(name: str, modules: dict[str, Path]) -> str | None:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imported_names(module: str, path: Path) -> set[str]:
    """Every dotted name `module` imports anywhere in its file, project or not (`from a import b` is
    `a.b`, relative imports resolved): what the forbidden edges are checked against."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = (_resolve_relative(module, is_package, node.level, node.module) if node.level
                      else node.module or "")
            found.update(f"{source}.{alias.name}" for alias in node.names)
    return found


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `module` imports anywhere in its file."""
    found = {target for name in imported_names(module, path) if (target := _known_prefix(name, modules))}
    found.discard(module)
    return found


def import_graph(source_dirs: tuple[Path, ...] = SOURCE_DIRS) -> dict[str, set[str]]:
    modules = discover_modules(source_dirs)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


# -- forbidden edges ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Forbidden:
    """Modules under `source` (but not under `exempt`) must not import anything under `targets`."""

    source: str
    targets: tuple[str, ...]
    why: str
    exempt: tuple[str, ...] = ()

    def covers(self, module: str) -> bool:
        return _under(module, self.source) and not any(_under(module, name) for name in self.exempt)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


_PACKAGES = ("aps_api", "aps_devstack", "aps_emulator", "aps_ingest_tasks", "aps_landing", "aps_pipeline",
             "aps_provider", "aps_results", "aps_run_page", "aps_samples")

FORBIDDEN = (
    Forbidden("aps_provider", ("aps_pipeline", "aps_results", "aps_api", "aps_ingest_tasks", "aps_run_page"),
              "the provider knows only APS (its links name the run page by address)"),
    Forbidden("aps_client", ("airflow", *_PACKAGES),
              "the APS client is the bottom floor: no Airflow, no other project package"),
    Forbidden("aps_api", ("aps_api.routers",), "a service module must not import a route module",
              exempt=("aps_api.routers", "aps_api.app")),
    Forbidden("aps_emulator", ("aps_emulator.routes",), "a service module must not import a route module",
              exempt=("aps_emulator.routes", "aps_emulator.app")),
)


def forbidden_edges(names: dict[str, set[str]], rules: tuple[Forbidden, ...] = FORBIDDEN) -> list[str]:
    """Each import that breaks a rule, as `module -> imported name  (why)`; `names` maps a module to the
    dotted names it imports (`imported_names`)."""
    return sorted(f"{module} -> {name}  ({rule.why})"
                  for module, imported in names.items()
                  for rule in rules if rule.covers(module)
                  for name in imported if any(_under(name, target) for target in rule.targets))


def imported_names_by_module(source_dirs: tuple[Path, ...] = SOURCE_DIRS) -> dict[str, set[str]]:
    return {name: imported_names(name, path) for name, path in discover_modules(source_dirs).items()}


def assert_no_forbidden_edges(names: dict[str, set[str]]) -> None:
    broken = forbidden_edges(names)
    assert not broken, "forbidden imports:\n" + "\n".join(broken)


def circular_groups(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected groups of more than one module (Tarjan): each one is tangled in circles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One concrete circle (a -> b -> ... -> a) per circular group."""
    return [_circle_in(group, graph) for group in circular_groups(graph)]


def _circle_in(group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest path from the group's first module back to itself, staying inside the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no circle in strongly connected group {sorted(group)}")


def test_no_import_circles() -> None:
    graph = import_graph()
    groups = circular_groups(graph)
    report = [f"{' -> '.join(_circle_in(group, graph))}  (circular group: {', '.join(sorted(group))})"
              for group in groups]
    assert not groups, "import circles:\n" + "\n".join(report)


def test_graph_covers_every_package_and_sees_hidden_imports(tmp_path: Path) -> None:
    graph = import_graph()
    packages = {name.split(".")[0] for name in graph}
    assert {"aps_client", "aps_emulator", "aps_pipeline", "aps_provider"} <= packages
    # Function-level and TYPE_CHECKING imports are edges: check the walker on a two-file circle.
    package = tmp_path / "aps_demo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from aps_demo import b\n    return b\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n")
    modules = {"aps_demo": package / "__init__.py", "aps_demo.a": package / "a.py",
               "aps_demo.b": package / "b.py"}
    demo = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert find_cycles(demo) == [["aps_demo.a", "aps_demo.b", "aps_demo.a"]]


@pytest.mark.parametrize(("edges", "expected"), [
    ({"x": {"y"}, "y": set()}, []),
    ({"x": {"y"}, "y": {"z"}, "z": {"x"}}, [["x", "y", "z", "x"]]),
])
def test_find_cycles_names_the_circle(edges: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert find_cycles(edges) == expected


def test_no_forbidden_edges() -> None:
    names = imported_names_by_module()
    assert any("airflow" in name for name in names["aps_provider.hooks.aps"])  # third-party imports are seen
    assert_no_forbidden_edges(names)


def _write_tree(root: Path, files: dict[str, str]) -> tuple[Path, ...]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return (root,)


def test_the_checker_fails_on_a_deliberate_forbidden_edge(tmp_path: Path) -> None:
    source_dirs = _write_tree(tmp_path, {
        "aps_provider/__init__.py": "",
        "aps_provider/links.py": "URL = '/aps/runs'\n",  # an address is fine
        "aps_provider/web.py": "def page():\n    from aps_results import run_report\n    return run_report\n",
        "aps_client/__init__.py": "",
        "aps_client/poll.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import airflow.sdk\n",
        "aps_api/__init__.py": "",
        "aps_api/app.py": "from aps_api.routers import models\n",  # the app assembles the routes: allowed
        "aps_api/routers/__init__.py": "",
        "aps_api/routers/models.py": "from ..token_cache import cache\n",
        "aps_api/token_cache.py": "from .routers import models\ncache = None\n",
    })
    names = imported_names_by_module(source_dirs)
    assert forbidden_edges(names) == [
        "aps_api.token_cache -> aps_api.routers.models  (a service module must not import a route module)",
        "aps_client.poll -> airflow.sdk  (the APS client is the bottom floor: no Airflow, no other project "
        "package)",
        "aps_provider.web -> aps_results.run_report  (the provider knows only APS (its links name the run "
        "page by address))",
    ]
    with pytest.raises(AssertionError, match=r"forbidden imports:\n.*aps_api.token_cache -> aps_api.routers"):
        assert_no_forbidden_edges(names)
