"""The package's import graph: no cycles, and imports point from surfaces to the core only.

Parsed from the source (``ast``), so a lazy import inside a function counts as much as one at the
top of a module; imports under ``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = "d365sync_nb"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
CORE = (
    "arguments",
    "automation",
    "config",
    "connection",
    "diagnostics",
    "errors",
    "explorer",
    "metadata",
    "models",
    "redaction",
    "text",
    "logs",
    "d365",
    "store",
    "sync",
)
# The operations (each declared once) and the view models they return, with the plain-text
# layout: UI-free, above the core, below every surface.
OPERATIONS = ("operations", "views", "render")
SURFACES = (
    "cli", "entry", "mcp_server", "mcp_resources", "tools", "tool_results", "metadata_tools",
    "automation_tools", "cli_watch", "notebook", "__main__",
)  # fmt: skip
EMULATOR = "emulator"


def module_names() -> dict[str, Path]:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


MODULES = module_names()


def _resolve(importer: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The package modules an import statement loads (``from a import b`` -> a.b if a module)."""
    targets: list[str] = []
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: from .x import y
            parts = importer.split(".")
            if MODULES[importer].name != "__init__.py":  # a module: its package is the parent
                parts = parts[:-1]
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join([*parts, base] if base else parts)
        for alias in node.names:
            full = f"{base}.{alias.name}"
            targets.append(full if full in MODULES else base)
    return [t for t in targets if t in MODULES and t != PACKAGE]


def _type_checking_only(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        if name == PACKAGE:  # the package root only re-exports (and hooks %load_ext lazily)
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_only(tree)
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and node.lineno not in skip:
                edges.update(_resolve(name, node))
        edges.discard(name)
        graph[name] = edges
    return graph


def layer(module: str) -> str:
    head = module.split(".")[1] if "." in module else ""
    if head in CORE:
        return "core"
    if head in OPERATIONS:
        return "operations"
    if head in SURFACES:
        return "surface"
    if head == EMULATOR:
        return "emulator"
    return "unknown"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_module_has_a_layer() -> None:
    unknown = sorted(m for m in import_graph() if layer(m) == "unknown")
    assert not unknown, f"modules outside the documented layers: {unknown}"


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer(m) == "core"))
def test_core_never_imports_a_surface(module: str) -> None:
    bad = sorted(t for t in import_graph().get(module, ()) if layer(t) in ("surface", "operations"))
    assert not bad, f"{module} (core) imports surface or operation modules {bad}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer(m) == "operations"))
def test_operations_never_import_a_surface(module: str) -> None:
    """Operations and their views are UI-free: every surface lays them out, none is imported."""
    bad = sorted(t for t in import_graph().get(module, ()) if layer(t) == "surface")
    assert not bad, f"{module} (operations) imports surface modules {bad}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer(m) == "emulator"))
def test_emulator_stands_alone(module: str) -> None:
    """The emulator stands in for the service: it imports nothing of the client side."""
    bad = sorted(t for t in import_graph().get(module, ()) if layer(t) != "emulator")
    assert not bad, f"{module} imports {bad}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer(m) == "core"))
def test_core_messages_name_no_assistant_tool(module: str) -> None:
    """Tool names (d365fo_*) belong to the tools surface, not to the core's messages."""
    assert "d365fo_" not in MODULES[module].read_text(encoding="utf-8")


def test_the_checker_sees_a_cycle_and_a_layer_breach() -> None:
    """The checks above can fail: a made-up graph with a cycle and a core->surface edge."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert layer(f"{PACKAGE}.sync.manager") == "core"
    assert layer(f"{PACKAGE}.notebook.panel") == "surface"
    assert layer(f"{PACKAGE}.operations.history") == "operations"


def test_the_cli_starts_without_pandas_or_matplotlib() -> None:
    """A CLI sync never draws a chart: importing the CLI leaves pandas, numpy and matplotlib
    (about a second of CPU and 140 MB of RSS) for the commands that draw."""
    code = (
        "import sys, d365sync_nb.cli\n"
        "print(sorted(m for m in ('pandas', 'numpy', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", out
