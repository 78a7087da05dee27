"""The documentation's table of methods is the registry's: a registered method is listed with its summary,
paper and what it needs, and the compare guide shows the generated table, not a typed one."""

from pathlib import Path

from dynamicvit.docsgen.methods import methods_table
from dynamicvit.methods.registry import METHODS

ROOT = Path(__file__).resolve().parents[2]


def test_every_registered_method_is_a_line_with_its_attributes():
    table = methods_table()
    for name, method in METHODS.items():
        line = next(line for line in table.splitlines() if line.startswith(f"| `{name}` |"))
        assert method.summary in line and (f"arXiv {method.paper}" if method.paper else "baseline") in line
        assert line.endswith("| its own |") == method.per_image
    assert "| `random` |" in table and "| no | no |" in next(x for x in table.splitlines() if "`random`" in x)


def test_the_compare_guide_shows_the_generated_table():
    page = (ROOT / "docs" / "guides" / "compare.md").read_text()
    assert "<!-- methods -->" in page and "| method | what it does |" not in page
