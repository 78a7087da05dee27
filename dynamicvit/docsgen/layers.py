"""The architecture page's diagram, drawn from the code: which of the package's folders each folder imports
(import statements and module names given to ``importlib``), folders ordered so that each sits above
everything it imports."""

from __future__ import annotations

import graphlib
from pathlib import Path

from dynamicvit.docsgen.imports import imported_modules

__all__ = ["folder_imports", "render_layers"]


def folder_imports(package: Path) -> dict[str, set[str]]:
    """For each top-level folder (or module) of ``package``, the others it imports anywhere inside it."""
    edges: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).parts
        if len(parts) == 1 and parts[0] in ("__init__.py", "__main__.py"):
            continue  # the public API and the entry point stand above every layer
        here = parts[0].removesuffix(".py")
        found = edges.setdefault(here, set())
        found |= {name.split(".")[1] for name in imported_modules(path, package) if "." in name} - {here}
    return edges


def render_layers(package: Path) -> str:
    """A text diagram, top layer first: each folder with the folders it imports (``─► a, b``)."""
    edges = folder_imports(package)
    order = list(graphlib.TopologicalSorter(edges).static_order())  # raises on an import cycle between folders
    width = max(map(len, order))
    lines = [f"{name:<{width}}  ─► {', '.join(sorted(edges.get(name, ()))) or '(nothing)'}" for name in reversed(order)]
    return "```text\n" + "\n".join(lines) + "\n```"
