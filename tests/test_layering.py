"""Imports point down: the layering stated in ``chunkwise/__init__.py`` holds for every
import in ``src/chunkwise`` (module level or inside functions), and no package cycle exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import chunkwise

SRC = Path(chunkwise.__file__).parent


def stated_layers() -> dict[str, int]:
    """``L<n>: a, b, c`` lines of the package docstring -> {package: n}."""
    layers = {}
    for m in re.finditer(r"^\s*L(\d+):\s*(.+)$", chunkwise.__doc__ or "", re.M):
        for name in re.split(r"[,\s]+", m.group(2).split("(")[0].strip()):
            if name:
                layers[name] = int(m.group(1))
    return layers


def package_of(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    return rel.parts[0] if rel.parts[0] != "__init__" else "__init__"


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "chunkwise" and len(parts) > 1:
                out.add(parts[1])
    return out


def test_every_package_has_a_stated_layer():
    layers = stated_layers()
    packages = {package_of(p) for p in SRC.rglob("*.py")} - {"__init__"}
    assert packages <= set(layers), f"packages without a layer in chunkwise/__init__.py: {packages - set(layers)}"


def test_imports_point_down_and_packages_form_no_cycle():
    layers = stated_layers()
    edges: dict[str, set[str]] = {}
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name.endswith("_pb2.py") or path.name.endswith("_pb2_grpc.py"):
            continue
        pkg = package_of(path)
        if pkg == "__init__":
            continue
        for dep in imports(path) - {pkg}:
            edges.setdefault(pkg, set()).add(dep)
            if layers.get(dep, 99) > layers[pkg]:
                bad.append(f"{path.relative_to(SRC)} (L{layers[pkg]}) imports chunkwise.{dep} (L{layers[dep]})")
    assert not bad, "imports pointing up:\n" + "\n".join(bad)
    # same-layer imports are allowed, cycles are not
    state: dict[str, int] = {}

    def visit(n: str, trail: list[str]) -> None:
        state[n] = 1
        for m in sorted(edges.get(n, ())):
            assert state.get(m) != 1, "package cycle: " + " -> ".join(trail + [n, m])
            if m not in state:
                visit(m, trail + [n])
        state[n] = 2

    for n in sorted(edges):
        if n not in state:
            visit(n, [])
