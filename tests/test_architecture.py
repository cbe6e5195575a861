"""The package's parts import downward only, lazy imports inside functions included.

The parts and their order are the ones docs/architecture.md draws. A part may import any part
below it and never one above it, so no two parts can form a circle. The test parses every module
of the package (imports at module level, inside functions and under `TYPE_CHECKING` alike).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import anystore_cli

PACKAGE = Path(anystore_cli.__file__).parent

LAYERS = ("errors", "util", "config", "store", "backends", "services", "server", "cli", "core", "testing")
"""Bottom to top: a part imports only parts listed before it (and the package root's version)."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _part(module: str) -> str | None:
    """The part a dotted module name belongs to (None: the package root itself)."""
    bits = module.split(".")
    if len(bits) < 2 or bits[1] in ("__version__", "__main__"):
        return None
    return bits[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import of this package in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = _module_name(path).split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "anystore_cli":
                found.extend((node.lineno, f"anystore_cli.{alias.name}") for alias in node.names)
            elif module.startswith("anystore_cli."):
                found.append((node.lineno, module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names if a.name.startswith("anystore_cli."))
    return found


def _part_graph() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _part(_module_name(path))
        if source is None:
            continue
        for line, module in _imports(path):
            target = _part(module)
            if target is not None and target != source:
                edges[(source, target)].append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    return edges


def _cycles(edges: dict[tuple[str, str], list[str]]) -> list[list[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        graph[source].add(target)
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_every_part_of_the_package_is_a_known_layer():
    parts = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    parts |= {p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    assert parts <= set(LAYERS), f"parts not placed in a layer: {sorted(parts - set(LAYERS))}"


def test_no_part_imports_a_part_above_it():
    upward = [
        where
        for (source, target), lines in sorted(_part_graph().items())
        if target in LAYERS and LAYERS.index(target) > LAYERS.index(source)
        for where in lines
    ]
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_no_import_circle_between_parts():
    edges = _part_graph()
    cycles = _cycles(edges)
    detail = [" -> ".join(cycle) + "\n  " + "\n  ".join(edges[(cycle[0], cycle[1])]) for cycle in cycles]
    assert not cycles, "import circles between parts:\n" + "\n".join(detail)


def test_the_checker_sees_a_circle_and_a_lazy_import(tmp_path):
    """The parser counts imports inside functions, and the cycle search finds a two-part circle."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from anystore_cli.cli.app import main\n    return main\n")
    assert _imports(module) == [(2, "anystore_cli.cli.app")]
    assert _cycles({("store", "cli"): ["x"], ("cli", "store"): ["y"]}) == [["cli", "store", "cli"]]
