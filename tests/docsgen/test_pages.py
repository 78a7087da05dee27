"""The pages say nothing stale: every repository path they cite exists."""

import re
from pathlib import Path

import dynamicvit

ROOT = Path(__file__).resolve().parents[2]
# the package's own files are where it is installed (in a checkout, the same tree; from the sdist, the wheel)
PACKAGE_PARENT = Path(dynamicvit.__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# a path in backticks, e.g. `dynamicvit/weights/release.py`, `scripts/setup.sh`, `recipes/deit_small.yaml`
CITED = re.compile(r"`((?:dynamicvit|scripts|tests|recipes|docs)/[\w/.-]+\.(?:py|sh|yaml|md|json|png))`")


def test_every_cited_path_exists():
    missing = [
        f"{page.relative_to(ROOT)}: {path}"
        for page in PAGES
        for path in CITED.findall(page.read_text())
        if "NAME" not in path and not (ROOT / path).exists() and not (PACKAGE_PARENT / path).exists()
    ]
    assert not missing, f"pages cite paths that do not exist: {missing}"


def test_sphinx_roles_become_code():
    from dynamicvit.docsgen.roles import strip_roles

    html = "see :func:<code>dynamicvit.sparsify</code> and :class:<code>~dynamicvit.core.keep.MaskRule</code>"
    html += " or :mod:<code>.merging</code>"
    assert strip_roles(html) == (
        "see <code>dynamicvit.sparsify</code> and <code>MaskRule</code> or <code>merging</code>"
    )
