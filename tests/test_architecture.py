"""The package's shape, read from its own imports (ast): no cycles, layers point down, one class
per name. Imports inside functions count: a lazy import is still a dependency."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "memrl"
# Commands: nothing below them may import them, and none imports another; memrl.cli (the
# dispatcher) and memrl.demo (a script chaining train and eval) are the two that may.
ENTRYPOINTS = ("memrl.cli", "memrl.train", "memrl.tune", "memrl.evaluate", "memrl.demo")
ENTRYPOINT_PACKAGES = ("memrl.bench", "memrl.tune", "memrl.repro")
COMPOSERS = ("memrl.cli", "memrl.demo")
# The bottom layers import nothing above them.
LAYERS = {
    "memrl.models": (),
    "memrl.envs": ("memrl.models",),
    "memrl.config": ("memrl.models", "memrl.envs"),
    "memrl.replay": ("memrl.models", "memrl.config"),
    "memrl.rllib": ("memrl.models", "memrl.envs", "memrl.config", "memrl.replay"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(name: str) -> str | None:
    """The memrl module ``name`` denotes (a module, or the package holding a name)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """Every memrl module ``module`` imports, at any depth of its code."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # "from pkg import sub" imports the submodule when there is one, else pkg itself.
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == "memrl" or name.startswith("memrl."):
                target = _resolve(name)
                if target is not None and target != module:
                    found.add(target)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def _reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in GRAPH[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _is_entrypoint(module: str) -> bool:
    return module in ENTRYPOINTS or any(
        module == p or module.startswith(p + ".") for p in ENTRYPOINT_PACKAGES
    )


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_graph_sees_imports_inside_functions():
    # memrl.config.checks asks memrl.models and memrl.envs inside its functions only.
    assert "memrl.envs" in GRAPH["memrl.config.checks"]
    assert "memrl.models" in GRAPH["memrl.config.checks"]


def test_no_import_cycles():
    cycles = []
    for module in sorted(GRAPH):
        if module in _reachable(module):
            cycles.append(module)
    if cycles:
        # Name one cycle path for the first module, so the message says what to cut.
        start = cycles[0]
        path, node = [start], start
        visited = {start}
        while True:
            nxt = next(n for n in sorted(GRAPH[node]) if start in _reachable(n) or n == start)
            path.append(nxt)
            if nxt == start or nxt in visited:
                break
            visited.add(nxt)
            node = nxt
        pytest.fail(f"import cycles through {cycles}; e.g. {' -> '.join(path)}")


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_lower_layers_import_nothing_above_them(layer):
    allowed = (layer, *LAYERS[layer])
    bad = sorted(
        (module, target)
        for module in GRAPH
        if _within(module, layer)
        for target in GRAPH[module]
        if not any(_within(target, a) for a in allowed)
    )
    assert not bad, f"{layer} may import only {allowed}; found {bad}"


def test_config_schema_reaches_neither_rllib_nor_an_entrypoint():
    reached = set()
    for module in GRAPH:
        if _within(module, "memrl.config"):
            reached |= _reachable(module)
    bad = sorted(m for m in reached if _within(m, "memrl.rllib") or _is_entrypoint(m))
    assert not bad, f"memrl.config reaches {bad}"


def test_no_entrypoint_imports_another():
    bad = sorted(
        (module, target)
        for module in GRAPH
        if _is_entrypoint(module) and module not in COMPOSERS
        for target in GRAPH[module]
        if _is_entrypoint(target) and target.split(".")[:2] != module.split(".")[:2]
    )
    assert not bad, f"entrypoints importing other entrypoints: {bad}"


def test_nothing_below_the_entrypoints_imports_them():
    bad = sorted(
        (module, target)
        for module in GRAPH
        if not _is_entrypoint(module)
        for target in GRAPH[module]
        if _is_entrypoint(target)
    )
    assert not bad, f"library modules importing an entrypoint: {bad}"


def test_no_two_classes_share_a_name():
    where: dict[str, list[str]] = {}
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                where.setdefault(node.name, []).append(module)
    counts = Counter({name: len(mods) for name, mods in where.items()})
    shared = {name: where[name] for name, n in counts.items() if n > 1}
    assert not shared, f"class names defined more than once: {shared}"
