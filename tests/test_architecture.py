"""The package's layout is its architecture: no import cycles, and no layer imports one above it.

Imports are read from the source (every ``import``, at module level, inside functions and under
``TYPE_CHECKING`` alike), so a cycle hidden from the interpreter by a lazy import still fails here.
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.backends import BACKENDS
from pipeline.config import BACKEND_NAMES

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"

# Lowest first. A module may import from its own layer and the layers below it, never above.
LAYERS: list[tuple[str, ...]] = [
    ("container", "errors", "outcomes", "redaction"),  # shipped to SageMaker / imported by everything
    ("config", "config_messages", "interrupts", "logs", "progress"),
    ("state", "monitoring"),  # the store and locks; capture records, baselines, drift and live-accuracy statistics
    ("training", "serving", "testing", "scoring"),  # scoring: reading, scoring and writing a file to predict
    ("backends",),
    ("gate", "deployment"),
    ("notifications", "reporting"),
    ("run", "operations", "monitoring.monitor", "monitoring.monitor_run",  # drivers: a run, the commands, `monitor`,
     "scoring.service"),  # and `predict`
    ("cli",),
]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # the container's relative imports
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from package import module`` imports the module; a package's own __init__ only when a name of
            # it is imported (the package's __init__ that Python runs first is not counted: it is not a choice).
            candidates = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                          for alias in node.names]
        else:
            continue
        for candidate in candidates:
            if candidate in known and candidate != name:
                yield candidate


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imports_of(name, path, known)) for name, path in known.items()}


def layer_of(module: str) -> int:
    relative = module.removeprefix("pipeline.")
    best = None
    for index, names in enumerate(LAYERS):
        for prefix in names:
            if relative == prefix or relative.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    assert best is not None, f"{module} is in no layer of tests/test_architecture.py"
    return best[0]


def test_no_module_imports_itself_back_through_others():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_no_layer_imports_a_layer_above_it():
    upward = sorted(f"{source} -> {target}" for source, targets in graph().items() for target in targets
                    if source != "pipeline" and target != "pipeline" and layer_of(target) > layer_of(source))
    assert upward == []


def test_state_config_and_errors_import_no_backend():
    edges = graph()
    lower = [name for name in edges if name.split(".")[1:2] in (["state"], ["config"], ["errors"])]
    assert lower and not [f"{name} -> {target}" for name in lower for target in edges[name]
                          if target.startswith("pipeline.backends")]


def test_the_container_code_imports_nothing_of_the_package_but_itself():
    edges = graph()
    assert not [f"{name} -> {target}" for name, targets in edges.items() if name.startswith("pipeline.container")
                for target in targets if not target.startswith("pipeline.container")]


def test_every_module_is_at_most_500_lines():
    assert {name: length for name, path in modules().items()
            if (length := len(path.read_text().splitlines())) > 500} == {}


def test_at_most_15_modules_sit_directly_in_the_package():
    assert len([path for path in PACKAGE.glob("*.py")]) <= 15


def test_the_config_names_the_same_backends_as_the_registry():
    assert tuple(BACKENDS) == BACKEND_NAMES
