"""The package's layers: no import cycle, at module level or between subpackages.

Every import is counted, also those inside functions (a lazy import still makes two modules
depend on each other). Backends (:mod:`deen.backends`) sit below both building
(:mod:`deen.export`) and applications (:mod:`deen.runtime`, ``bench``, ``eval``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import deen

PACKAGE_ROOT = Path(deen.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """deen module → the deen modules it imports (a package import counts as its
    ``__init__``; ``from pkg import name`` counts as ``pkg.name`` when that is a module)."""
    modules = {module_name(p): p for p in PACKAGE_ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
                targets = [t if t in modules else node.module for t in targets]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def subpackage(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_module_imports_itself_through_others() -> None:
    assert find_cycle(import_graph()) is None


def test_no_cycle_between_subpackages() -> None:
    graph: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        graph.setdefault(subpackage(module), set()).update(
            subpackage(t) for t in targets if subpackage(t) != subpackage(module))
    assert find_cycle(graph) is None, find_cycle(graph)


def test_backends_import_neither_export_nor_runtime() -> None:
    for module, targets in import_graph().items():
        if module.startswith("deen.backends"):
            assert not {subpackage(t) for t in targets} & {"deen.export", "deen.runtime"}, \
                module


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_layers_import_on_their_own() -> None:
    for module in ("deen.backends", "deen.export", "deen.runtime"):
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)


def test_the_live_runtime_on_an_exported_model_needs_no_pytorch() -> None:
    """`deen run --model m.xml|m.onnx` on an edge box: PyTorch's few hundred MB of memory
    stay out of the process (the RSS target of the live runtime depends on it)."""
    modules = ("deen.cli", "deen.runtime.live", "deen.runtime.web",
               "deen.backends.openvino_backend", "deen.backends.onnxrt_backend")
    code = (f"import sys, {', '.join(modules)}; "
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'torch'); "
            "sys.exit(f'imported {loaded[:3]}' if loaded else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_model_server_imports_nothing_of_the_live_runtime() -> None:
    """deen serve is a model for many boxes, not a live box: its modules reach no module of
    deen.runtime (the address parser both use lives in deen.address)."""
    graph = import_graph()
    serve = [m for m in graph if m.startswith("deen.serve")]
    reached = set(serve)
    frontier = list(serve)
    while frontier:
        for nxt in graph[frontier.pop()] - reached:
            reached.add(nxt)
            frontier.append(nxt)
    assert not [m for m in reached if m.startswith("deen.runtime")]


def test_library_code_does_not_print() -> None:
    """Only the command line (deen/cli.py, deen/__main__.py) writes to the terminal; library
    code hands its lines to a log callable it is given."""
    calls = []
    for path in PACKAGE_ROOT.rglob("*.py"):
        if path.name in ("cli.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id == "print":
                calls.append(f"{path.relative_to(PACKAGE_ROOT)}:{node.lineno}")
    assert not calls, calls
