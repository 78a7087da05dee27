"""The reliability page's promises, read from the tests that check them: a test decorated with
``@pytest.mark.promise(SECTION, WHAT)`` puts one row (what is promised, the test that checks it) under
``<!-- promises:SECTION -->`` on a page, so a promise in the docs cannot outlive or drift from its test."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Promise", "promises", "render_promises"]


@dataclass(frozen=True)
class Promise:
    """One promise: the page section it belongs to, what it says, and the test (``path::name``) checking it."""

    section: str
    what: str
    test: str


def promises(tests: Path) -> list[Promise]:
    """Every ``pytest.mark.promise`` under ``tests``, in file and line order."""
    found = []
    for path in sorted(tests.rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                found += [
                    Promise(*(arg.value for arg in mark.args), f"{path.relative_to(tests.parent)}::{node.name}")
                    for mark in node.decorator_list
                    if _is_promise(mark)
                ]
    return found


def _is_promise(mark: ast.expr) -> bool:
    return isinstance(mark, ast.Call) and ast.unparse(mark.func) == "pytest.mark.promise" and len(mark.args) == 2


def render_promises(section: str, tests: Path) -> str:
    """The markdown table of ``section``'s promises; an error naming the section when no test makes one."""
    rows = [p for p in promises(tests) if p.section == section]
    if not rows:
        raise ValueError(f"no test promises anything under {section!r} (@pytest.mark.promise({section!r}, ...))")
    return "\n".join(["| promise | checked by |", "|---|---|", *(f"| {p.what} | `{p.test}` |" for p in rows)])
