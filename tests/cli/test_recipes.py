"""`train --config FILE.yaml` and `--dry-run`: the release's recipes, flags over files, and the large-scale
options' bad input (one line, exit 2, nothing written)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import make_hf, make_shards
from test_bad_inputs import _snapshot

from dynamicvit.cli import main
from dynamicvit.config import SECTIONS, RunConfig, read_recipe

RECIPE_DIR = Path(__file__).parents[2] / "recipes"
RECIPES = sorted(RECIPE_DIR.glob("*.yaml"))


def _dry_run(capsys, *args: str) -> dict:
    """The resolved config ``--dry-run`` prints (by section), flat."""
    assert main(["train", "--dry-run", *args]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert set(printed) == set(SECTIONS)
    return {k: v for section in printed.values() for k, v in section.items()}


def test_there_is_a_recipe_per_release_run():
    names = {p.stem for p in RECIPES}
    assert names == {
        "deit_small",
        "deit_base",
        "lvvit_s",
        "lvvit_m",
        "convnext_tiny",
        "convnext_small",
        "convnext_base",
        "swin_tiny",
        "swin_small",
        "swin_base",
    }


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_each_recipe_resolves_and_round_trips(recipe, capsys, tmp_path):
    resolved = _dry_run(capsys, "--config", str(recipe))
    set_in_file = read_recipe(recipe)
    assert all(resolved[k] == v for k, v in set_in_file.items())
    assert resolved["ratio_weight"] is not None and resolved["backbone_lr_scale"] is not None  # family filled
    again = tmp_path / "resolved.yaml"
    again.write_text(yaml.safe_dump(resolved))
    assert _dry_run(capsys, "--config", str(again)) == resolved
    assert RunConfig.from_dict(resolved) == RunConfig.of(**resolved)


def test_release_values_and_flags_over_the_file(capsys):
    deit = _dry_run(capsys, "--config", str(RECIPE_DIR / "deit_small.yaml"))
    base = _dry_run(capsys, "--config", str(RECIPE_DIR / "deit_base.yaml"), "--epochs", "15")
    assert (base["epochs"], base["ratio_weight"], base["model_kwargs"]) == (15, 5.0, {"drop_path_rate": 0.2})
    conv = _dry_run(capsys, "--config", str(RECIPE_DIR / "convnext_tiny.yaml"))
    assert (conv["lr"], conv["accum_steps"], conv["backbone_lr_scale"], conv["warmup_epochs"]) == (4e-3, 4, 0.2, 20)
    assert deit["aa"] == "rand-m9-mstd0.5-inc1" and deit["reprob"] == 0.25 and deit["ema_decay"] == 0.9999


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text)


BAD = [
    ("--config {d}/typo.yaml", "'learning_rate' is no config field"),
    ("--config {d}/kind.yaml", "epochs must be int, got 'many'"),
    ("--config {d}/missing.yaml", "missing.yaml: no such file"),
    ("--accum-steps 0", "--accum-steps must be 1 to 1024, got 0"),
    ("--aa rand-x9", "--aa 'rand-x9' is no timm auto-augment policy"),
    ("--data wds --data-dir {d}/shards", "matches no file"),
    ("--data wds --data-dir {d}/in1k-{{split}}-{{0..3}}.tar", "in1k-train-{0..3}.tar matches no file"),
    ("--data hfds --data-dir {d}/hf", "no image column"),
]


@pytest.mark.parametrize(("line", "names"), BAD, ids=[b for b, _ in BAD])
def test_bad_recipes_and_data_are_one_line_before_any_work(line, names, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "typo.yaml", "learning_rate: 0.1\n")
    _write(tmp_path, "kind.yaml", "epochs: many\n")
    make_shards(tmp_path / "shards", {"val": [2]})
    make_hf(tmp_path / "hf", train=4, val=2, columns=("picture", "label"))
    before = _snapshot(tmp_path)
    capsys.readouterr()  # the fixtures' own output
    args = ["train", "--dense", "--model", "vit_tiny_patch16_224", "--img-size", "16", "--out", str(tmp_path / "run")]
    assert main([*args, *line.format(d=tmp_path).split()]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and names in err, err
    assert _snapshot(tmp_path) == before
