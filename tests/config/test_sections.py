"""The run configuration by section: each field declared once, in its section; flags and help groups walk the
sections; flat configs (checkpoints, recipes written before the sections) and sectioned ones load alike."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dynamicvit.builder import load_trained
from dynamicvit.cli import build_parser
from dynamicvit.cli.config_args import config_from_args
from dynamicvit.config import FORMER_KEYS, SECTIONS, RunConfig, config_fields, field_key
from dynamicvit.core.options import option

DATA = Path(__file__).resolve().parent / "data"


def test_each_field_is_declared_once_in_its_section():
    keys = [field_key(f) for _, f in config_fields()]
    assert len(keys) == len(set(keys)) == sum(map(len, SECTIONS.values()))
    assert list(SECTIONS) == ["model", "data", "augment", "schedule", "budget", "loss", "run"]
    cfg = RunConfig()
    assert (cfg.schedule.epochs, cfg.budget.keep_rate, cfg.data.dataset) == (30, 0.7, "cluttered-fashion-mnist")


def test_flat_and_sectioned_dicts_load_alike_and_replace_routes_by_key():
    flat = {"epochs": 2, "keep_rate": 0.5, "data": "fashion-mnist", "seed": 3, "not_a_field": 1}
    cfg = RunConfig.from_dict(flat)
    sectioned = RunConfig.from_dict({"schedule": {"epochs": 2}, "budget": {"keep_rate": 0.5},
                                     "data": {"data": "fashion-mnist"}, "run": {"seed": 3}})  # fmt: skip
    assert cfg == sectioned == RunConfig.of(epochs=2, keep_rate=0.5, data="fashion-mnist", seed=3)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg and cfg.get("data") == "fashion-mnist"
    tuned = cfg.replace(lr=0.5, canvas=96)
    assert (tuned.schedule.lr, tuned.data.canvas, cfg.schedule.lr, cfg.data.canvas) == (0.5, 96, 1e-3, 64)
    assert tuned.schedule.epochs == 2 and tuned.budget is cfg.budget  # untouched sections are shared, not copied
    with pytest.raises(TypeError, match="RunConfig has no field 'nope'"):
        cfg.replace(nope=1)


def test_a_checkpoint_written_before_the_sections_loads_to_the_same_logits():
    """``data/run_before_sections.pth`` was written by the release before the sections (its flat config beside
    the weights); its logits on a seeded input were recorded then (``run_before_sections.json``)."""
    path = DATA / "run_before_sections.pth"
    saved = torch.load(path, weights_only=True)["config"]
    assert "epochs" in saved and "schedule" not in saved  # flat, as written
    model, cfg = load_trained(str(path))
    renamed = {FORMER_KEYS.get(k, k): v for k, v in saved.items()}  # tome_r is merge_r now
    assert cfg.to_dict() == {**RunConfig().to_dict(), **renamed}  # every saved value where the sections put it
    assert (cfg.budget.keep_rate, cfg.data.dataset, cfg.model.model) == (0.5, "fashion-mnist", saved["model"])
    recorded = json.loads((DATA / "run_before_sections.json").read_text())
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model.eval()(x)
    # recorded on another CPU: float32 sums may differ in their last bits there (SIMD width, threads); a
    # value loaded into the wrong place changes the logits by orders of magnitude more
    torch.testing.assert_close(logits, torch.tensor(recorded["logits"]), rtol=1e-5, atol=1e-6)


def test_a_field_declared_in_a_section_becomes_a_flag_with_its_help_and_default(monkeypatch, capsys):
    toy = dataclasses.make_dataclass("ToyConfig", [("toy_knob", "int", option(3, "how much toy to use"))])
    sections = RunConfig.sections()
    monkeypatch.setattr(RunConfig, "sections", classmethod(lambda cls: {**sections, "toy": toy}))
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    (group,) = [g for g in train._action_groups if g.title == "toy"]
    (knob,) = group._group_actions
    assert knob.option_strings == ["--toy-knob"] and knob.help == "how much toy to use (default: 3)"
    assert parser.parse_args(["train", "--toy-knob", "5"]).toy_knob == 5


TOY_DATA_SET = """
from dataclasses import dataclass

from dynamicvit.core.options import option
from dynamicvit.data.registry import DataOptions, DataSet, register_dataset


@dataclass(frozen=True)
class ToyOptions(DataOptions):
    toy_blobs: int = option(3, "blobs per toy image", valid=(lambda v: v >= 1, "at least 1"))


register_dataset(DataSet("toy", lambda split, o: [o.toy_blobs] * o.limit, options=ToyOptions))

from dynamicvit.builder.data import build_run_dataset
from dynamicvit.cli import main
from dynamicvit.cli.config_args import config_from_args
from dynamicvit.cli.parser import build_parser
from dynamicvit.config import validate

main(["train", "--help"])
args = build_parser().parse_args(["train", "--data", "toy", "--toy-blobs", "5", "--train-limit", "2"])
cfg = validate(config_from_args(args), training=False)
print("built:", build_run_dataset(cfg, "train"), cfg.data.toy_blobs, cfg.to_dict()["toy_blobs"])
"""


def test_a_data_set_option_is_one_declaration_in_its_set(tmp_path):
    """A data set declares its own knob in its options class; the data section, the flag with its help and
    default, the range check and the builder's options all follow (in a fresh interpreter: the config is made
    from the sets registered when it is first imported)."""
    script = tmp_path / "toy.py"
    script.write_text(TOY_DATA_SET)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    help_text = " ".join(run.stdout.split())
    assert "--toy-blobs TOY_BLOBS toy: blobs per toy image (default: 3)" in help_text
    assert "built: [5, 5] 5 5" in run.stdout
    refused = run_toy(tmp_path, "--toy-blobs", "0")
    assert refused.returncode == 2 and refused.stderr.strip().endswith("--toy-blobs must be at least 1, got 0")


def run_toy(tmp_path, *flags):
    """``dynamicvit train --dense --data toy FLAGS`` with the toy set registered first."""
    registration = TOY_DATA_SET.split("from dynamicvit.builder")[0]
    argv = ["train", "--dense", "--data", "toy", "--out", str(tmp_path / "run"), *flags]
    script = tmp_path / "toy_cli.py"
    script.write_text(f"{registration}\nimport sys\nfrom dynamicvit.cli import main\nsys.exit(main({argv!r}))\n")
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)


def test_a_renamed_field_still_reads_under_its_former_name(tmp_path):
    """ToMe's and MCTF's r was the config's ``tome_r``; saved configs, recipes, flags and resumed runs still say
    so."""
    from dynamicvit.config import check_resumable, read_recipe, trusted_config

    assert RunConfig.from_dict(trusted_config({"tome_r": 4.0}, "old.pth")).model.merge_r == 4.0
    (tmp_path / "old.yaml").write_text("tome_r: 2\n")
    assert read_recipe(tmp_path / "old.yaml") == {"merge_r": 2.0}
    assert config_from_args(build_parser().parse_args(["train", "--tome-r", "3"])).model.merge_r == 3.0
    state = {k: {} for k in ("model", "optimizer", "scheduler", "rng")} | {"epoch": 1}
    check_resumable({**state, "config": {**RunConfig.of(merge_r=4.0).to_dict(), "tome_r": 4.0}}, RunConfig.of(
        merge_r=4.0), "old.pth")  # fmt: skip
    saved = RunConfig.of(merge_r=4.0).to_dict()
    del saved["merge_r"]
    check_resumable({**state, "config": {**saved, "tome_r": 4.0}}, RunConfig.of(merge_r=4.0), "old.pth")
    with pytest.raises(ValueError, match="merge_r 4.0 -> 5.0"):
        check_resumable({**state, "config": {**saved, "tome_r": 4.0}}, RunConfig.of(merge_r=5.0), "old.pth")


def test_a_saved_config_lacking_a_field_reads_as_the_paper_the_code_ran_before_it():
    """A checkpoint with no config (the release's) or one written before DynamicViT's options existed was
    trained by the paper's rule with full-width predictors: it must load that way whatever today's defaults
    are, so a changed default never changes an old checkpoint's model."""
    from dynamicvit.config import saved_defaults

    paper = {"mask_rule": "gumbel", "predictor_width": 1.0, "mask_noise": "always", "merge_dropped": False,
             "attention_prior": False}  # fmt: skip
    assert saved_defaults() == paper
    loaded = RunConfig.from_saved({"keep_rate": 0.5}).to_dict()
    assert {k: loaded[k] for k in paper} == paper and loaded["keep_rate"] == 0.5
    assert RunConfig.from_saved({"mask_rule": "topk"}).loss.mask_rule == "topk"  # what it saved wins
