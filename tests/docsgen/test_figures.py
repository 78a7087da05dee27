"""No figure typed by hand: every measured number on the site and in the README is rendered from a result file
(``<!-- results:NAME -->``, or the README's demo table), so it cannot drift from its measurement."""

import json
import re
from pathlib import Path

from dynamicvit.docsgen.tables import render

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "docs" / "results"  # the source tree's (also in the sdist), not the installed package's
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# what reads as a measurement: a percentage, a signed difference, a ratio, a quantity with a measured unit
FIGURE = re.compile(
    r"(?<![\w.])(?:\d+(?:\.\d+)?\s?%|[+−-]\d+\.\d+|\d+\.\d+\s?×|"
    r"\d+(?:\.\d+)?\s?(?:points?|img/s|GMACs|GFLOPs|MMACs|ms|seconds|minutes|hours)\b)"
)
# figures that are no measurement of this project, each with its reason
ALLOWED = {
    "50 %": "a zero predictor bias keeps each token with probability sigmoid(0) (what-did-not-work, getting started)",
    "12.5 %": "the nested 50 / 25 / 12.5 % such a bias gives at three stages",
    "95 %": "the confidence level of the leaderboards' intervals",
    "0.1 points": "the teachers' convergence rule (a gain below it is no gain)",
    "0.1×": "the students' backbone learning-rate factor, a recipe setting",
    "1.5×": "the 14×14 proxy's item scale, a data setting",
}
CITATION = re.compile(r"arXiv \d{4}\.\d{5}")  # a sentence citing a paper quotes the paper's figures


def _prose(page: Path) -> str:
    """The page without what is rendered or quoted: fenced code, code spans, link targets, generated blocks."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    if page.name == "README.md":
        text = text.replace(render("demo", RESULTS_DIR), "")
    return re.sub(r"`[^`\n]*`|\]\([^)]*\)|<!--.*?-->", "", text)


def typed_figures(page: Path) -> list[str]:
    """The figures of ``page``'s prose that neither a result file, a paper citation nor :data:`ALLOWED` explains."""
    found = []
    for sentence in re.split(r"(?<=[.;:])\s+", _prose(page)):
        if CITATION.search(sentence):
            continue
        found += [f for f in FIGURE.findall(sentence) if f not in ALLOWED and not _readme_demo_time(page, f)]
    return found


def _readme_demo_time(page: Path, figure: str) -> bool:
    """The README's "about N minutes" for the demo: checked against the measured demo minutes below."""
    return page.name == "README.md" and figure == f"{readme_demo_minutes()} minutes"


def readme_demo_minutes() -> int:
    return int(re.search(r"runs the end-to-end demo, about (\d+) minutes", (ROOT / "README.md").read_text())[1])


def test_no_page_types_a_measured_figure():
    typed = {str(p.relative_to(ROOT)): f for p in PAGES if (f := typed_figures(p))}
    assert not typed, f"figures typed by hand (render them from a result file): {typed}"


def test_a_planted_figure_is_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Top-K reaches 77.01 % and runs 1.35× faster, +2.5 points over EViT.\n\n<!-- results:demo -->\n"
        "`--lr 0.5` and [a link](x-1.5.md) and ρ = 0.7 are settings; DeiT-S at 79.8 % (arXiv 2012.12877).\n"
    )
    assert typed_figures(page) == ["77.01 %", "1.35×", "+2.5"]


def test_the_readme_demo_time_is_the_measured_one():
    """The README's demo time rounds the mean of the measured demo minutes (docs/results/demo-seeds.json)."""
    rows = json.loads((RESULTS_DIR / "demo-seeds.json").read_text())["rows"]
    minutes = sum(r["total_seconds"] for r in rows) / len(rows) / 60
    assert readme_demo_minutes() == round(minutes)
