"""The codebase's shape, checked on every run (issue 13): no import cycles, no module reaching into
another module's private names, Ray only inside `swarm.cluster`, the routing core importable
without Ray, and no duplicated code (pylint's duplicate-code, threshold below)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "swarm"
RAY_PACKAGE = "swarm.cluster"
# pylint's duplicate-code: a run of this many similar lines (comments, docstrings, imports and
# signatures ignored) in two places is reported.
DUPLICATE_MIN_LINES = 8


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, tree: ast.Module, top_level_only: bool) -> Iterator[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import in the module; with
    `top_level_only`, only those that run when the module is imported (not inside a function).
    A module's PEP 562 `__getattr__` is a facade's lazy re-export (`swarm.serve` from where it is
    written), not a dependency of the module's own code: its imports are not counted."""
    facade = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "__getattr__"]
    hidden = {id(n) for f in facade for n in ast.walk(f)}
    nodes = tree.body if top_level_only else [n for n in ast.walk(tree) if id(n) not in hidden]
    is_package = name == "swarm" or (PACKAGE / Path(*name.split(".")[1:]) / "__init__.py").exists()
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            yield base, [a.name for a in node.names], node.lineno


def graph(top_level_only: bool) -> dict[str, set[str]]:
    mods = modules()
    out: dict[str, set[str]] = {m: set() for m in mods}
    for name, tree in mods.items():
        for target, names, _ in imports(name, tree, top_level_only):
            for candidate in [f"{target}.{n}" for n in names] + [target]:
                if candidate in mods and candidate != name:
                    out[name].add(candidate)
                    break
    return out


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_no_module_import_cycle():
    assert cycles(graph(top_level_only=True)) == []


def test_no_package_import_cycle():
    """Between the subpackages (and top-level modules) of swarm, counting imports inside functions too."""
    def unit(m: str) -> str:
        return ".".join(m.split(".")[:2])

    g: dict[str, set[str]] = {}
    for src, targets in graph(top_level_only=False).items():
        g.setdefault(unit(src), set()).update(unit(t) for t in targets if unit(t) != unit(src))
    for targets in list(g.values()):
        for t in targets:
            g.setdefault(t, set())
    assert cycles(g) == []


def test_no_module_imports_another_modules_private_name():
    mods = modules()
    bad = []
    for name, tree in mods.items():
        for target, names, line in imports(name, tree, top_level_only=False):
            for n in names:
                if n.startswith("_") and not n.startswith("__") and f"{target}.{n}" not in mods and target != name:
                    bad.append(f"{name}:{line} imports {target}.{n}")
    assert bad == []


def test_ray_is_imported_only_inside_its_package():
    bad = [f"{name}:{line}" for name, tree in modules().items() if not (name + ".").startswith(RAY_PACKAGE + ".")
           for target, _, line in imports(name, tree, top_level_only=False) if target == "ray" or target.startswith("ray.")]
    assert bad == []


def test_the_core_and_the_test_doubles_import_without_ray():
    code = ("import sys, swarm, swarm.node, swarm.membership, swarm.entry, swarm.policies, swarm.protocol, "
            "swarm.transport.memory, swarm.testing; assert 'ray' not in sys.modules, 'ray was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.needs("pylint", install="pip install -e '.[test]' -c constraints.txt")
def test_no_duplicated_code():
    done = subprocess.run(
        [sys.executable, "-m", "pylint", "--jobs=2", "--disable=all", "--enable=duplicate-code", f"--min-similarity-lines={DUPLICATE_MIN_LINES}",
         "--ignore-comments=y", "--ignore-docstrings=y", "--ignore-imports=y", "--ignore-signatures=y", "--score=n", str(PACKAGE)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
