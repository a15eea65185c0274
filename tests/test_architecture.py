"""DESIGN.md §7 import rules, checked on the source of every module.

- plan/, render/, config/ and state/ import no httpx and no click;
- controlplane/ imports nothing from api/, plan/ or apply (so the emulator
  cannot quietly agree with the client or the planner);
- only cli/ imports click; only api/ imports httpx (the one HTTP client).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rlorinfra"


def imported_modules(path: Path) -> set[str]:
    """Every module name a file imports (absolute or resolved relative)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def modules_under(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py")) if folder else sorted(PACKAGE.rglob("*.py"))


def imports(path: Path, prefix: str) -> list[str]:
    return sorted(m for m in imported_modules(path) if m == prefix or m.startswith(prefix + "."))


@pytest.mark.parametrize("folder", ["plan", "render", "config", "state"])
def test_core_layers_import_no_httpx_and_no_click(folder):
    for path in modules_under(folder):
        assert not imports(path, "httpx"), f"{path} imports httpx"
        assert not imports(path, "click"), f"{path} imports click"


def test_emulator_imports_nothing_from_client_planner_or_apply():
    for path in modules_under("controlplane"):
        for forbidden in ("rlorinfra.api", "rlorinfra.plan", "rlorinfra.apply", "rlorinfra.operations"):
            assert not imports(path, forbidden), f"{path} imports {forbidden}"


def test_only_cli_imports_click():
    offenders = [p for p in modules_under("") if "cli" not in p.relative_to(PACKAGE).parts and imports(p, "click")]
    assert offenders == []


def test_only_api_and_the_emulator_server_import_httpx():
    # api/ is the one HTTP client; nothing else may speak HTTP through httpx.
    offenders = [p for p in modules_under("") if p.relative_to(PACKAGE).parts[0] != "api" and imports(p, "httpx")]
    assert offenders == []


def test_nothing_below_cli_prints_or_exits():
    for path in modules_under(""):
        if path.relative_to(PACKAGE).parts[0] in ("cli", "__main__.py"):
            continue
        tree = ast.parse(path.read_text())
        calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        attrs = {
            f"{n.func.value.id}.{n.func.attr}"
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)
        }
        assert "print" not in calls, f"{path} prints"
        assert "sys.exit" not in attrs and "exit" not in calls, f"{path} exits"


def test_nothing_below_cli_reads_the_environment():
    # The API key and overrides come from the environment through the CLI only.
    for path in modules_under(""):
        if path.relative_to(PACKAGE).parts[0] == "cli":
            continue
        tree = ast.parse(path.read_text())
        reads = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute)
            and n.attr in ("environ", "getenv")
            and isinstance(n.value, ast.Name)
            and n.value.id == "os"
        ]
        assert not reads, f"{path} reads the environment"


def test_model_imports_nothing_else_of_rlorinfra():
    # Domain values every layer shares: they depend on nothing above them (DESIGN.md §10).
    for path in modules_under("model"):
        others = [
            m for m in imported_modules(path) if m.startswith("rlorinfra.") and not m.startswith("rlorinfra.model")
        ]
        assert not others, f"{path} imports {others}"
