"""The package's structure, read from its source: commands that do not train import nothing from the training
package, nothing below the command line imports it, no import cycle between modules, every module short, and
``import dynamicvit`` loads only the library (no task, data set or tool; no detection model beyond timm's own)."""

import ast
import subprocess
import sys
from pathlib import Path

import dynamicvit

PACKAGE = Path(dynamicvit.__file__).parent
# the features that use a model without training it
NOT_TRAINING = ["tools/app.py", "tools/bench.py", "tools/export.py", "tools/viz.py", "tools/tune.py",
                "tools/flops_report.py", "builder/evaluate.py"]  # fmt: skip
MAX_LINES = 400


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The dynamicvit modules ``path`` imports (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dynamicvit"):
            for alias in node.names:  # ``from package import module`` imports the module
                sub = f"{node.module}.{alias.name}"
                path = PACKAGE.parent / sub.replace(".", "/")
                found.add(sub if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file() else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("dynamicvit")}
    return found


GRAPH = {_module(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def _reach(start: str) -> set[str]:
    """Every dynamicvit module ``start`` imports, directly or through the modules it imports."""
    seen, todo = set(), [start]
    while todo:
        for dep in GRAPH.get(todo.pop(), set()):
            if dep in GRAPH and dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_features_that_do_not_train_import_nothing_from_train():
    for rel in NOT_TRAINING:
        reached = _reach(_module(PACKAGE / rel))
        assert not {m for m in reached if m.startswith("dynamicvit.train")}, rel


def test_nothing_below_the_command_line_imports_it():
    users = sorted(m for m, deps in GRAPH.items() if not m.startswith("dynamicvit.cli") and any(
        d.startswith("dynamicvit.cli") for d in deps))  # fmt: skip
    assert users == ["dynamicvit.__main__", "dynamicvit.docsgen.cli_reference"]  # the entry point, the docs


def test_no_module_imports_itself_through_others():
    assert [m for m in GRAPH if m in _reach(m)] == []


def test_every_module_is_short():
    long = {p.relative_to(PACKAGE).as_posix(): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}  # fmt: skip
    assert long == {}


def test_import_dynamicvit_loads_only_the_library():
    code = (
        "import sys; import timm; before = set(sys.modules); import dynamicvit; "
        "new = sorted(m for m in set(sys.modules) - before); print('\\n'.join(new))"
    )
    new = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert not [m for m in new if m.startswith("torchvision.models.detection")]
    heavy = ("dynamicvit.tasks", "dynamicvit.data", "dynamicvit.tools", "dynamicvit.train", "dynamicvit.docsgen",
             "dynamicvit.cli", "dynamicvit.builder", "dynamicvit.config")  # fmt: skip
    assert [m for m in new if m.startswith(heavy)] == []
