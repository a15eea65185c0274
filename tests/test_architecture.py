"""DESIGN.md §10 import rules, checked on the source of every module.

- Imports go down the layers and never up: ``ALLOWED_EDGES`` is §10's table as
  data. Any other edge between rlorinfra's packages fails, and so does any
  package cycle. Every ``import`` counts: top-level, function-local, relative
  and ``TYPE_CHECKING`` ones, and ``importlib.import_module("rlorinfra....")``.
- Third-party owners: only ``cli/`` imports click, only ``api/`` httpx, only
  ``state/backends/postgres.py`` psycopg and only ``state/backends/s3.py``
  boto3, both lazily (an install without the extra must still import them).
- Nothing below ``cli/`` prints, prompts, writes to the standard streams, exits
  or reads the environment.

The checker is a function (``check_architecture``) so a test can prove that it
fails: it runs on a synthetic package with a back-edge and a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rlorinfra"

# Importable by every layer except the emulator: typed errors, and the root
# package (it holds only ``__version__``).
LEAVES = frozenset({"errors", "rlorinfra"})
_BELOW_CLI = frozenset({"operations", "plan", "apply", "render", "config", "state", "api", "model", "controlplane"})

# DESIGN.md §10: which of rlorinfra's packages (and top-level modules) each one may import.
ALLOWED_EDGES: Mapping[str, frozenset[str]] = {
    "__main__": frozenset({"cli"}),
    "cli": _BELOW_CLI | LEAVES,
    # The workspace builds the embedded emulator, hence controlplane.
    "operations": (_BELOW_CLI - {"operations"}) | LEAVES,
    "plan": frozenset({"config", "state", "model"}) | LEAVES,
    "apply": frozenset({"plan", "state", "model"}) | LEAVES,
    "render": frozenset({"model"}) | LEAVES,
    "config": frozenset({"model"}) | LEAVES,
    "state": frozenset({"model"}) | LEAVES,
    "api": frozenset({"model"}) | LEAVES,
    "model": LEAVES - {"rlorinfra"},
    "errors": frozenset(),
    "rlorinfra": frozenset(),
    # The emulator imports nothing of rlorinfra, so it cannot quietly agree with the client.
    "controlplane": frozenset(),
}

# Third-party module -> the only places (folder prefixes or files) that may import it.
THIRD_PARTY_OWNERS: Mapping[str, tuple[str, ...]] = {
    "click": ("cli/",),
    "httpx": ("api/",),
    "psycopg": ("state/backends/postgres.py",),
    "psycopg_pool": ("state/backends/postgres.py",),
    "boto3": ("state/backends/s3.py",),
    "botocore": ("state/backends/s3.py",),
}
# Drivers of optional extras: imported inside functions only.
LAZY_THIRD_PARTY = frozenset({"psycopg", "psycopg_pool", "boto3", "botocore"})

# Calls and names that print, prompt, exit or read the environment: the CLI's job only.
FORBIDDEN_CALLS = frozenset({"print", "input", "exit", "quit"})
FORBIDDEN_NAMES: Mapping[str, frozenset[str]] = {
    "sys": frozenset({"exit", "stdout", "stderr", "stdin", "__stdout__", "__stderr__", "__stdin__"}),
    "os": frozenset({"_exit", "environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}),
    "getpass": frozenset({"getpass"}),
}
# (file, name) -> why it is needed there.
EXEMPT_NAMES: Mapping[tuple[str, str], str] = {
    # PEP 3333: every WSGI environ carries a ``wsgi.errors`` stream; the server supplies stderr.
    ("controlplane/server.py", "sys.stderr"): "the WSGI server's wsgi.errors stream",
}
# Packages (and modules) allowed to print, exit and read the environment.
UI_UNITS = frozenset({"cli", "__main__"})


@dataclass(frozen=True, order=True)
class Violation:
    """One broken rule, at a file and line."""

    path: str
    line: int
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.detail}"


@dataclass(frozen=True)
class Import:
    """One imported module name (resolved to absolute) and how it was imported."""

    module: str
    line: int
    lazy: bool  # inside a function or under ``if TYPE_CHECKING:``


@dataclass(frozen=True)
class Module:
    """A source file of the checked package."""

    path: Path
    relative: PurePosixPath  # below the package folder, e.g. ``plan/planner.py``
    dotted: str  # e.g. ``rlorinfra.plan.planner``
    is_package: bool  # an ``__init__.py``
    tree: ast.Module

    @property
    def unit(self) -> str:
        """The package or top-level module this file belongs to (the root's ``__init__`` is the root)."""
        first = self.relative.parts[0]
        if first == "__init__.py":
            return self.dotted
        return first.removesuffix(".py")

    def shown(self) -> str:
        """The path as messages show it: ``rlorinfra/plan/planner.py``."""
        return f"{self.dotted.split('.')[0]}/{self.relative}"


# -- reading the package -----------------------------------------------------------


def modules_of(package_dir: Path) -> list[Module]:
    """Every ``.py`` file below ``package_dir``, parsed."""
    modules = []
    for path in sorted(package_dir.rglob("*.py")):
        relative = PurePosixPath(path.relative_to(package_dir).as_posix())
        parts = [package_dir.name, *relative.with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        dotted = ".".join(parts[:-1] if is_package else parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        modules.append(Module(path, relative, dotted, is_package, tree))
    return modules


def imports_of(module: Module) -> Iterator[Import]:
    """Every module ``module`` imports, relative imports resolved, with where and how."""
    for node, lazy in _walk(module.tree, lazy=False):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, node.lineno, lazy)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node.level, node.module)
            for name in _from_root(base, node.names, root=module.dotted.split(".")[0]) or [base]:
                yield Import(name, node.lineno, lazy)
        elif isinstance(node, ast.Call) and (target := _import_module_target(node)) is not None:
            yield Import(target, node.lineno, lazy)


def _from_root(base: str, names: list[ast.alias], *, root: str) -> list[str]:
    """``from rlorinfra import errors, plan``: the units it names (``__version__`` is the root's own)."""
    if base != root:
        return []
    return [f"{root}.{alias.name}" if not alias.name.startswith("__") else root for alias in names]


def _walk(node: ast.AST, *, lazy: bool) -> Iterator[tuple[ast.AST, bool]]:
    """Every node below ``node``, with whether it runs only later (function body, TYPE_CHECKING)."""
    for child in ast.iter_child_nodes(node):
        yield child, lazy
        deferred = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) or _is_type_checking(child)
        yield from _walk(child, lazy=lazy or deferred)


def _is_type_checking(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(module: Module, level: int, name: str | None) -> str:
    """The absolute module of ``from <level dots><name> import ...`` inside ``module``."""
    if level == 0:
        return name or ""
    package = module.dotted.split(".") if module.is_package else module.dotted.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _import_module_target(node: ast.Call) -> str | None:
    """The constant prefix of ``importlib.import_module("...")``/``import_module(f"...")``, if any."""
    if not node.args:
        return None
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if called != "import_module":
        return None
    arg = node.args[0]
    if isinstance(arg, ast.JoinedStr) and arg.values:
        arg = arg.values[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value.rstrip(".")
    return None


# -- the rules ---------------------------------------------------------------------------


def unit_of(imported: str, root: str) -> str | None:
    """The package (or top-level module) of ``root`` that ``imported`` names; None for other modules."""
    parts = imported.split(".")
    if parts[0] != root:
        return None
    return parts[1] if len(parts) > 1 else root


def edges_of(modules: list[Module]) -> Iterator[tuple[Module, Import, str]]:
    """Every import of another unit of the package: (importing module, import, imported unit)."""
    for module in modules:
        root = module.dotted.split(".")[0]
        for imp in imports_of(module):
            target = unit_of(imp.module, root)
            if target is not None and target != module.unit:
                yield module, imp, target


def edge_violations(modules: list[Module], allowed: Mapping[str, frozenset[str]]) -> list[Violation]:
    """Imports between units that the table does not allow (and units missing from the table)."""
    found = [
        Violation(m.shown(), imp.line, "import edge not allowed", f"{m.unit} -> {target} ({imp.module})")
        for m, imp, target in edges_of(modules)
        if m.unit in allowed and target not in allowed[m.unit]
    ]
    for unit in sorted({m.unit for m in modules} - set(allowed)):
        first = next(m for m in modules if m.unit == unit)
        found.append(Violation(first.shown(), 1, "unit missing from ALLOWED_EDGES", unit))
    return found


def cycle_violations(modules: list[Module]) -> list[Violation]:
    """One violation per package cycle (a strongly connected set of two or more units)."""
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], tuple[str, int]] = {}
    for module, imp, target in edges_of(modules):
        graph.setdefault(module.unit, set()).add(target)
        where.setdefault((module.unit, target), (module.shown(), imp.line))
    found = []
    for component in strongly_connected(graph):
        cycle = _cycle_through(sorted(component)[0], component, graph)
        path, line = where[(cycle[0], cycle[1])]
        found.append(Violation(path, line, "package cycle", " -> ".join(cycle)))
    return found


def strongly_connected(graph: Mapping[str, set[str]]) -> list[frozenset[str]]:
    """The components of two or more nodes that reach each other (Tarjan; the graph is small)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _cycle_through(start: str, component: frozenset[str], graph: Mapping[str, set[str]]) -> list[str]:
    """A shortest path ``start -> ... -> start`` inside ``component`` (breadth first)."""
    paths = [[start, successor] for successor in sorted(graph[start] & component)]
    while paths:
        path = paths.pop(0)
        if path[-1] == start:
            return path
        paths.extend([*path, nxt] for nxt in sorted(graph[path[-1]] & component) if nxt not in path[1:])
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def third_party_violations(modules: list[Module]) -> list[Violation]:
    """Imports of click/httpx/psycopg/boto3 outside their owners, and eager driver imports."""
    found = []
    for module in modules:
        for imp in imports_of(module):
            top = imp.module.split(".")[0]
            owners = THIRD_PARTY_OWNERS.get(top)
            if owners is None:
                continue
            if not str(module.relative).startswith(owners):
                found.append(Violation(module.shown(), imp.line, f"only {', '.join(owners)} may import {top}", top))
            elif top in LAZY_THIRD_PARTY and not imp.lazy:
                found.append(Violation(module.shown(), imp.line, "driver imported at module level", top))
    return sorted(set(found))


def ui_violations(modules: list[Module]) -> list[Violation]:
    """Printing, prompting, exiting or reading the environment below ``cli/``."""
    found = []
    for module in modules:
        if module.unit in UI_UNITS:
            continue
        for line, name in _ui_uses(module.tree):
            if (str(module.relative), name) not in EXEMPT_NAMES:
                found.append(Violation(module.shown(), line, "below cli/: no output, prompts, exits or env", name))
    return found


def _ui_uses(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, what) for each forbidden call, ``sys.*``/``os.*`` name and ``from sys/os import``."""
    aliases = {
        alias.asname or alias.name: alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name in FORBIDDEN_NAMES
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            yield node.lineno, f"{node.func.id}()"
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            owner = aliases[node.value.id]
            if node.attr in FORBIDDEN_NAMES[owner]:
                yield node.lineno, f"{owner}.{node.attr}"
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            forbidden = FORBIDDEN_NAMES.get(node.module or "", frozenset())
            for alias in node.names:
                if alias.name in forbidden:
                    yield node.lineno, f"{node.module}.{alias.name}"


def check_architecture(package_dir: Path, allowed: Mapping[str, frozenset[str]] = ALLOWED_EDGES) -> list[Violation]:
    """Every violation of DESIGN.md §10's rules in the package at ``package_dir``, sorted."""
    modules = modules_of(package_dir)
    return sorted(
        edge_violations(modules, allowed)
        + cycle_violations(modules)
        + third_party_violations(modules)
        + ui_violations(modules)
    )


# -- the real tree ---------------------------------------------------------------------------


def test_the_package_follows_design_section_10() -> None:
    # Lists every violation at once (file:line: rule: detail), so one run shows the whole job.
    violations = [str(v) for v in check_architecture(PACKAGE)]
    assert not violations, f"{len(violations)} violations of DESIGN.md §10:\n" + "\n".join(violations)


def test_the_allowed_edges_table_is_acyclic_and_goes_down() -> None:
    graph = {unit: set(targets) for unit, targets in ALLOWED_EDGES.items()}
    assert strongly_connected(graph) == []
    assert all(targets <= set(ALLOWED_EDGES) for targets in ALLOWED_EDGES.values())


def test_every_unit_on_disk_is_in_the_table() -> None:
    assert {m.unit for m in modules_of(PACKAGE)} <= set(ALLOWED_EDGES)


@pytest.mark.parametrize("folder", ["plan", "render", "config", "state"])
def test_core_layers_import_no_httpx_and_no_click(folder: str) -> None:
    for module in modules_of(PACKAGE):
        if module.unit == folder:
            tops = {imp.module.split(".")[0] for imp in imports_of(module)}
            assert not tops & {"httpx", "click"}, f"{module.shown()} imports {tops & {'httpx', 'click'}}"


def test_emulator_imports_nothing_of_rlorinfra() -> None:
    offenders = [
        f"{m.shown()}:{imp.line} {imp.module}"
        for m, imp, _ in edges_of(modules_of(PACKAGE))
        if m.unit == "controlplane"
    ]
    assert offenders == []


def test_model_imports_nothing_above_it() -> None:
    # Domain values every layer shares: they depend on nothing above them (DESIGN.md §10).
    offenders = [
        f"{m.shown()}:{imp.line} {target}"
        for m, imp, target in edges_of(modules_of(PACKAGE))
        if m.unit == "model" and target != "errors"
    ]
    assert offenders == []


def test_only_cli_imports_click_and_only_api_imports_httpx() -> None:
    assert [str(v) for v in third_party_violations(modules_of(PACKAGE))] == []


def test_nothing_below_cli_prints_exits_or_reads_the_environment() -> None:
    assert [str(v) for v in ui_violations(modules_of(PACKAGE))] == []


# -- the checker can fail: a synthetic package in tmp_path -----------------------------------


def write_package(root: Path, files: Mapping[str, str]) -> Path:
    """A package ``rlorinfra`` under ``root`` with ``files`` (relative path -> source)."""
    package = root / "rlorinfra"
    for relative, source in {"__init__.py": "", **files}.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        for folder in path.relative_to(package).parents:
            (package / folder / "__init__.py").touch()
        path.write_text(source, encoding="utf-8")
    return package


def rules(violations: list[Violation]) -> set[tuple[str, str, str]]:
    return {(v.path, v.rule, v.detail) for v in violations}


def test_a_back_edge_and_the_cycle_it_makes_are_both_reported(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "model/values.py": "from rlorinfra.plan.planner import plan\n",
            "plan/planner.py": "from rlorinfra.model.values import Value\n",
            "config/load.py": "from rlorinfra.model import values\n",
        },
    )
    found = rules(check_architecture(package))
    assert found == {
        ("rlorinfra/model/values.py", "import edge not allowed", "model -> plan (rlorinfra.plan.planner)"),
        ("rlorinfra/model/values.py", "package cycle", "model -> plan -> model"),
    }


def test_relative_function_local_and_dynamic_imports_count(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "api/client.py": "def build():\n    from ..config import model\n    return model\n",
            "state/store.py": "from . import codec\nfrom .. import render\n",
            "state/codec.py": "",
            "render/__init__.py": "import importlib\nimportlib.import_module(f'rlorinfra.cli.{1}')\n",
            "cli/main.py": "",
        },
    )
    assert {(v.path, v.line, v.detail) for v in check_architecture(package)} == {
        ("rlorinfra/api/client.py", 2, "api -> config (rlorinfra.config)"),
        ("rlorinfra/state/store.py", 2, "state -> render (rlorinfra.render)"),
        ("rlorinfra/render/__init__.py", 2, "render -> cli (rlorinfra.cli)"),
    }


def test_an_unknown_unit_and_the_emulator_importing_errors_are_reported(tmp_path: Path) -> None:
    package = write_package(tmp_path, {"extras.py": "", "controlplane/app.py": "from rlorinfra.errors import E\n"})
    (package / "errors.py").write_text("class E(Exception): ...\n")
    assert rules(check_architecture(package)) == {
        ("rlorinfra/extras.py", "unit missing from ALLOWED_EDGES", "extras"),
        ("rlorinfra/controlplane/app.py", "import edge not allowed", "controlplane -> errors (rlorinfra.errors)"),
    }


def test_output_exits_and_environment_are_reported_below_cli_only(tmp_path: Path) -> None:
    body = (
        "import os\nimport sys as system\nfrom os import getenv\n"
        "print('x')\nsystem.stdout.write('x')\nos._exit(1)\nos.environ.get('A')\n"
    )
    package = write_package(tmp_path, {"plan/planner.py": body, "cli/main.py": body, "controlplane/server.py": body})
    found = {(v.path, v.detail) for v in check_architecture(package)}
    for path in ("rlorinfra/plan/planner.py", "rlorinfra/controlplane/server.py"):
        assert {(path, d) for d in ("os.getenv", "print()", "sys.stdout", "os._exit", "os.environ")} <= found
    assert not any(path == "rlorinfra/cli/main.py" for path, _ in found)


def test_the_wsgi_errors_stream_is_the_only_exemption(tmp_path: Path) -> None:
    uses_stderr = "import sys\nenviron = {'wsgi.errors': sys.stderr}\n"
    package = write_package(tmp_path, {"controlplane/server.py": uses_stderr, "controlplane/app.py": uses_stderr})
    assert rules(check_architecture(package)) == {
        ("rlorinfra/controlplane/app.py", "below cli/: no output, prompts, exits or env", "sys.stderr")
    }


def test_third_party_imports_outside_their_owners_are_reported(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "plan/planner.py": "import click\nfrom httpx import Client\n",
            "state/backends/postgres.py": "import psycopg\n\ndef connect():\n    import psycopg\n",
            "state/backends/s3.py": "def client():\n    import boto3\n",
            "state/backends/local.py": "def client():\n    import boto3\n",
            "cli/main.py": "import click\n",
            "api/client.py": "import httpx\n",
        },
    )
    assert {(v.path, v.line, v.rule) for v in check_architecture(package)} == {
        ("rlorinfra/plan/planner.py", 1, "only cli/ may import click"),
        ("rlorinfra/plan/planner.py", 2, "only api/ may import httpx"),
        ("rlorinfra/state/backends/postgres.py", 1, "driver imported at module level"),
        ("rlorinfra/state/backends/local.py", 2, "only state/backends/s3.py may import boto3"),
    }
