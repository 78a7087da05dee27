"""The README's quick start runs as written (offline: no pretrained weights), every name in it defined."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_quick_start_runs_as_written(capsys):
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], flags=re.S)
    namespace: dict = {}
    exec(compile(code, "README.md quick start", "exec"), namespace)  # noqa: S102 - the project's own README
    model = namespace["model"]
    assert model.keep_rate == 0.5 and not model.training
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "torch.Size([2, 1000]) [137, 96, 67]"


def test_getting_started_shows_the_same_quick_start():
    def quick_start(path):
        section = (ROOT / path).read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
        return re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]

    assert quick_start("docs/getting-started.md") == quick_start("README.md")


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200
