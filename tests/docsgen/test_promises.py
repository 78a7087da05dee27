"""The reliability page's promises come from the tests that check them: each section a page shows has tests,
each test's promise is shown on a page, and a new marked test appears without editing the page."""

import re
from pathlib import Path

import pytest

from dynamicvit.docsgen.promises import promises, render_promises

ROOT = Path(__file__).resolve().parents[2]
SHOWN = re.compile(r"<!-- promises:([\w -]+) -->")


def _shown() -> set[str]:
    return {m for page in (ROOT / "docs").rglob("*.md") for m in SHOWN.findall(page.read_text())}


def test_every_shown_section_has_tests_and_every_promise_is_shown():
    made = {p.section for p in promises(ROOT / "tests")}
    assert _shown() and _shown() == made
    for section in _shown():
        table = render_promises(section, ROOT / "tests")
        assert table.count("\n| ") >= 2 and "`tests/" in table


def test_a_marked_test_becomes_a_row_naming_it(tmp_path):
    (tmp_path / "tests" / "sub").mkdir(parents=True)
    (tmp_path / "tests" / "sub" / "test_toy.py").write_text(
        "import pytest\n\n\n@pytest.mark.parametrize('x', [1])\n"
        "@pytest.mark.promise('toys', 'a toy never breaks ' 'twice')\ndef test_toy(x):\n    pass\n"
    )
    table = render_promises("toys", tmp_path / "tests")
    assert "| a toy never breaks twice | `tests/sub/test_toy.py::test_toy` |" in table
    with pytest.raises(ValueError, match="no test promises anything under 'other'"):
        render_promises("other", tmp_path / "tests")
