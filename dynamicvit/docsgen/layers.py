"""The architecture page's diagram, drawn from the code: which of the package's folders each folder imports
(import statements and module names given to ``importlib``), folders ordered so that each sits above
everything it imports."""

from __future__ import annotations

import ast
import graphlib
import re
from pathlib import Path

__all__ = ["folder_imports", "render_layers"]

_MODULE = re.compile(r"dynamicvit(\.\w+)+")


def folder_imports(package: Path) -> dict[str, set[str]]:
    """For each top-level folder (or module) of ``package``, the others it imports anywhere inside it."""
    edges: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).parts
        if len(parts) == 1 and parts[0] in ("__init__.py", "__main__.py"):
            continue  # the public API and the entry point stand above every layer
        here = parts[0].removesuffix(".py")
        found = edges.setdefault(here, set())
        for node in ast.walk(ast.parse(path.read_text())):
            for name in _imported(node):
                there = name.split(".")[1]
                if there != here:
                    found.add(there)
    return edges


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dynamicvit."):
        return [node.module]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("dynamicvit.")]
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE.fullmatch(node.value):
        return [node.value]
    return []


def render_layers(package: Path) -> str:
    """A text diagram, top layer first: each folder with the folders it imports (``─► a, b``)."""
    edges = folder_imports(package)
    order = list(graphlib.TopologicalSorter(edges).static_order())  # raises on an import cycle between folders
    width = max(map(len, order))
    lines = [f"{name:<{width}}  ─► {', '.join(sorted(edges.get(name, ()))) or '(nothing)'}" for name in reversed(order)]
    return "```text\n" + "\n".join(lines) + "\n```"
