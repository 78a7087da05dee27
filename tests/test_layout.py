"""The package's structure, read from its source: every import runs down the layers (module names in strings,
as ``importlib`` takes them, included), commands that do not train import nothing from the training package,
no import cycle between modules, every module short, and ``import dynamicvit`` loads only the library (no
task, data set or tool; no detection model beyond timm's own)."""

import subprocess
import sys
from pathlib import Path

import dynamicvit
from dynamicvit.docsgen.imports import imported_modules

PACKAGE = Path(dynamicvit.__file__).parent
# the features that use a model without training it
NOT_TRAINING = ["frontend/app.py", "bench/throughput.py", "export.py", "frontend/viz.py", "bench/tune.py",
                "bench/flops_report.py", "builder/evaluate.py"]  # fmt: skip
MAX_LINES = 400
# bottom to top: a module imports only from its own layer or those before it (docs/architecture.md)
LAYERS = ["core", "draw", "weights", "models", "methods", "data", "tasks", "config", "builder", "export", "bench",
          "frontend", "train", "experiments", "cli", "docsgen"]  # fmt: skip
# the package root is the public API over the library's layers; ``python -m dynamicvit`` is the command line
ROOT_REACHES = {"dynamicvit": "bench", "dynamicvit.__main__": "cli"}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


GRAPH = {_module(p): imported_modules(p, PACKAGE) for p in PACKAGE.rglob("*.py")}


def _reach(start: str) -> set[str]:
    """Every dynamicvit module ``start`` imports, directly or through the modules it imports."""
    seen, todo = set(), [start]
    while todo:
        for dep in GRAPH.get(todo.pop(), set()):
            if dep in GRAPH and dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[1])


def test_every_import_runs_down_the_layers():
    upward = []
    for module, deps in GRAPH.items():
        top = LAYERS.index(ROOT_REACHES[module]) if module in ROOT_REACHES else _layer(module)
        upward += [f"{module} -> {d}" for d in deps if _layer(d) > top]
    assert upward == []


def test_every_folder_has_a_layer():
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()} | {"export"}
    assert folders == set(LAYERS)


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
    heavy = ("dynamicvit.tasks", "dynamicvit.data", "dynamicvit.bench", "dynamicvit.experiments", "dynamicvit.frontend",
             "dynamicvit.export", "dynamicvit.train", "dynamicvit.docsgen", "dynamicvit.cli", "dynamicvit.builder",
             "dynamicvit.config")  # fmt: skip
    assert [m for m in new if m.startswith(heavy)] == []
