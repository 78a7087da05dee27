"""The architecture page's diagram is drawn from the code: every folder, each above what it imports."""

import graphlib
from pathlib import Path

import pytest

import dynamicvit
from dynamicvit.docsgen.layers import folder_imports, render_layers

PACKAGE = Path(dynamicvit.__file__).parent
ROOT = Path(__file__).resolve().parents[2]


def test_the_diagram_shows_every_folder_above_what_it_imports():
    lines = render_layers(PACKAGE).splitlines()[1:-1]
    order = [line.split()[0] for line in lines]
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()} | {"export"}
    assert set(order) == folders and order[-1] == "core"
    for name, imported in folder_imports(PACKAGE).items():
        assert all(order.index(other) > order.index(name) for other in imported), name
    assert "<!-- layers -->" in (ROOT / "docs" / "architecture.md").read_text()


def test_an_import_cycle_between_folders_cannot_be_drawn(tmp_path):
    package = tmp_path / "dynamicvit"
    for name, other in (("a", "b"), ("b", "a")):
        (package / name).mkdir(parents=True)
        (package / name / "__init__.py").write_text(f"from dynamicvit.{other} import x\n")
    assert folder_imports(package) == {"a": {"b"}, "b": {"a"}}
    with pytest.raises(graphlib.CycleError):
        render_layers(package)
