"""The package's import graph, built from the sources (ast, nothing imported): no cycles, and nothing imports
the CLI (`otio_lipsync.cli` is a leaf that only the `lipsync` entry point loads)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# import name -> folder, as pyproject.toml's [tool.setuptools.package-dir] maps them
PACKAGE_DIRS = {"otio_lipsync": REPO / "otio_lipsync", "otio_lipsync.model": REPO / "model",
                "otio_lipsync.train": REPO / "train", "otio_lipsync.ffmpeg_filter": REPO / "ffmpeg_filter"}
CLI_MODULES = {"otio_lipsync.cli", "otio_lipsync.train.cli"}  # leaves: only their entry points load them
ENTRY_POINTS = {"otio_lipsync.__main__"}  # `python -m otio_lipsync`: the one module that may import the CLI


def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> source file (a sub-folder of `otio_lipsync/` that is
    mapped elsewhere is not walked twice)."""
    out = {}
    for name, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            dotted = ".".join([name, *parts])
            if any(dotted.startswith(other + ".") or dotted == other
                   for other in PACKAGE_DIRS if other != name and other.startswith(name + ".")):
                continue
            out[dotted] = path
    return out


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(lazy: bool = True) -> dict[str, set[str]]:
    """module -> the package modules it imports (with lazy=True also the imports inside functions)."""
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        nodes = ast.walk(tree) if lazy else tree.body
        for node in nodes:
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, path.name == "__init__.py", node)
                # `from . import x` may name a submodule or an attribute: take the submodule when there is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for target in targets:
                while target and target not in mods:  # `a.b.c` where c is an attribute: the module a.b
                    target = target.rpartition(".")[0]
                if target and target != module and target != "otio_lipsync":
                    graph[module].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_graph_sees_the_package():
    graph = import_graph()
    assert "otio_lipsync.api" in graph and "otio_lipsync.model.registry" in graph
    assert "otio_lipsync.sync" in graph["otio_lipsync.api"]


def test_no_import_cycles():
    """Imports inside functions count too: a lazy import hides a cycle from the interpreter, not from a reader."""
    cycle = find_cycle(import_graph(lazy=True))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_nothing_imports_the_cli():
    graph = import_graph()
    importers = {m: sorted(deps & CLI_MODULES) for m, deps in graph.items()
                 if deps & CLI_MODULES and m not in ENTRY_POINTS}
    assert importers == {}, f"the CLI is a leaf; these import it: {importers}"
    # and by text, for imports the graph cannot see (importlib, strings)
    for module, path in modules().items():
        if module not in CLI_MODULES | ENTRY_POINTS:
            text = path.read_text()
            assert "otio_lipsync.cli" not in text and "from .cli import" not in text, module


def test_the_api_is_below_the_front_ends():
    """The stages never import the API (it sits on top of them); the API never imports a front end."""
    graph = import_graph()
    below = ("model", "media", "faces", "sync", "speakers", "drift", "analysis", "footage", "verdict", "errors")
    stages = [m for m in graph if m.split(".")[1:2] and m.split(".")[1] in below]
    assert [m for m in stages if "otio_lipsync.api" in graph[m]] == []
    assert not graph["otio_lipsync.api"] & {"otio_lipsync.batch", "otio_lipsync.cli"}


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
