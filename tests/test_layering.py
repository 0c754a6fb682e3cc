"""The import structure of p3m: data flows one way, no cycles (read from the source with `ast`).

Layers, lowest first; a module may import its own layer and the layers below, never above:

    0  errors, vocabulary, _version     (standard library only: every layer may use them)
    1  io, runs                         (the folder-run engine sits with io)
    2  models                           (incl. the weights hub)
    3  detection
    4  inference
    5  data, privacy, evaluation, training, and video, scale, experiments when they appear
    6  serve, cli; the package root `p3m` (its lazy names reach into the whole library, so it is a
       facade at the top: nothing in the library imports it); every `__main__` module (an entry
       point that nothing imports: `python -m p3m.training` is `p3m train` on one rank)

What counts as an import: `import` / `from ... import` statements anywhere in a module (at the
top, inside functions and methods), except under `if TYPE_CHECKING:` (annotations only, never
run); and modules named by string (lazy attribute tables such as `p3m.inference`'s, plugin lists
such as the model registry's and the CLI's command modules), which are imported on first use.

The checks:
* no import goes up the layers (statements and modules named by string alike);
* no cycle between modules through import statements. Two kinds of edge are left out of this
  one, because they are how a package is meant to be put together: a package's `__init__`
  importing its own modules (the package *is* its facade; its modules may import it), and
  modules named by string (a registry loads its plugins by name, the plugins register with it);
* no cycle between top-level packages (ideas) through any kind of edge, the deprecated modules
  kept importable for one release excepted (each points to its new home, which may be a sibling
  that imports the old package).
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import p3m

ROOT = Path(p3m.__file__).parent

LAYERS: dict[str, int] = {
    "errors": 0, "vocabulary": 0, "_version": 0,
    "io": 1, "runs": 1,
    "models": 2,
    "detection": 3,
    "inference": 4,
    "data": 5, "privacy": 5, "evaluation": 5, "training": 5, "video": 5, "scale": 5, "experiments": 5,
    "serve": 6, "cli": 6,
}  # fmt: skip
TOP = 6

DEPRECATED = {
    "p3m.data.sets": "TestSet",
    "p3m.inference.weights": "resolve_weights",
    "p3m.privacy.copy_paste": "copy_paste",
    "p3m.privacy.cp_sources": "CPSourceSet",
    "p3m.privacy.detection": "detect_faces",
    "p3m.training.validation": "evaluate_on_set",
}
"""Modules kept importable for one release (name -> an attribute they forward)."""


def _modules() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The deepest p3m module a dotted name refers to (a module, or the module defining a name)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(id(inner) for inner in ast.walk(child))
    return skipped


def _edges(module: str, path: Path) -> tuple[set[str], set[str]]:
    """(modules imported by statements, modules named by string) of one module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped = _type_checking_nodes(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    statements: set[str | None] = set()
    named: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            statements.update(_resolve(alias.name) for alias in node.names if alias.name.split(".")[0] == "p3m")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "p3m":
                continue
            for alias in node.names:
                child = f"{source}.{alias.name}"
                statements.add(child if child in MODULES else _resolve(source))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in MODULES:
            named.add(node.value)
    statements.discard(None)
    statements.discard(module)
    named.discard(module)
    named.discard("p3m")  # the bare word (a cache folder's name, ...), not the package root
    return {name for name in statements if name}, named - statements


EDGES = {module: _edges(module, path) for module, path in MODULES.items()}


def _idea(module: str) -> str:
    """The top-level package (or module) a module belongs to; 'p3m' for the root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "p3m"


def _layer(module: str) -> int:
    if module == "p3m" or module.endswith(".__main__"):
        return TOP
    idea = _idea(module)
    if idea not in LAYERS:
        raise AssertionError(f"p3m.{idea} is in no layer: add it to LAYERS in {__file__}")
    return LAYERS[idea]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_walk_sees_the_library():
    assert {"p3m.errors", "p3m.runs.engine", "p3m.models.hub", "p3m.cli.matte_cmd"} <= set(MODULES)
    statements, named = EDGES["p3m.inference.backends"]
    assert "p3m.models.hub" in statements  # imported inside a function
    assert "p3m.inference.api" in EDGES["p3m.inference"][1]  # a lazy name
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_goes_up_the_layers():
    upward = [
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        for module, (statements, named) in sorted(EDGES.items())
        for target in sorted(statements | named)
        if _layer(target) > _layer(module)
    ]
    assert not upward, "imports up the layers:\n" + "\n".join(upward)


def test_no_import_cycle_between_modules():
    def is_facade_edge(module: str, target: str) -> bool:
        return MODULES[module].name == "__init__.py" and target.startswith(module + ".")

    graph = {
        module: {target for target in statements if not is_facade_edge(module, target)}
        for module, (statements, _named) in EDGES.items()
    }
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(cycle) for cycle in cycles)


def test_no_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for module, (statements, named) in EDGES.items():
        if module in DEPRECATED or module.endswith(".__main__"):
            continue
        for target in statements | named:
            if _idea(target) != _idea(module):
                graph.setdefault(_idea(module), set()).add(_idea(target))
    cycles = _cycles(graph)
    assert not cycles, "packages that import each other:\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", sorted(DEPRECATED))
def test_deprecated_modules_warn_and_forward(module):
    import importlib

    old = importlib.import_module(module)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert getattr(old, DEPRECATED[module]) is not None
    assert any(issubclass(w.category, DeprecationWarning) for w in caught), module
