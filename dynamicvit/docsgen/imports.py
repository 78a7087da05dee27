"""Which of the package's modules a source file imports, read from its syntax tree without running it: the
one reader behind the architecture diagram (:mod:`.layers`) and the layering tests."""

from __future__ import annotations

import ast
import re
from pathlib import Path

__all__ = ["imported_modules"]

_MODULE = re.compile(r"\w+(\.\w+)+")


def imported_modules(path: Path, root: Path) -> set[str]:
    """The modules of the package under ``root`` that ``path`` imports, at module level or inside functions.

    ``from package import module`` counts as importing the module; a string naming a module of the package
    (given to ``importlib.import_module``, or in a table of lazy imports) counts as importing it.

    Args:
        path: a Python source file.
        root: the package's folder (its name is the prefix every counted import starts with).

    Returns:
        Dotted module names, e.g. ``{"dynamicvit.core.files", "dynamicvit.models"}``.
    """
    package = root.name
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and _inside(node.module, package):
            found |= {_submodule(node.module, alias.name, root.parent) for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if _inside(a.name, package)}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE.fullmatch(node.value):
            if node.value.startswith(package + "."):
                found.add(node.value)
    return found


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _submodule(module: str, name: str, parent: Path) -> str:
    """``module.name`` where that is a module or package of its own, else ``module``."""
    sub = f"{module}.{name}"
    where = parent / sub.replace(".", "/")
    return sub if where.with_suffix(".py").is_file() or (where / "__init__.py").is_file() else module
