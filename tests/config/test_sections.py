"""The run configuration by section: each field declared once, in its section; flags and help groups walk the
sections; flat configs (checkpoints, recipes written before the sections) and sectioned ones load alike."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from dynamicvit.builder import load_trained
from dynamicvit.cli import build_parser
from dynamicvit.config import SECTIONS, RunConfig, config_fields, field_key
from dynamicvit.config.fields import _opt

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
    assert cfg.to_dict() == {**RunConfig().to_dict(), **saved}  # every saved value where the sections put it
    assert (cfg.budget.keep_rate, cfg.data.dataset, cfg.model.model) == (0.5, "fashion-mnist", saved["model"])
    recorded = json.loads((DATA / "run_before_sections.json").read_text())
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.eval()(x), torch.tensor(recorded["logits"]))


def test_a_field_declared_in_a_section_becomes_a_flag_with_its_help_and_default(monkeypatch, capsys):
    toy = dataclasses.make_dataclass("ToyConfig", [("toy_knob", "int", _opt(3, "how much toy to use"))])
    sections = RunConfig.sections()
    monkeypatch.setattr(RunConfig, "sections", classmethod(lambda cls: {**sections, "toy": toy}))
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    (group,) = [g for g in train._action_groups if g.title == "toy"]
    (knob,) = group._group_actions
    assert knob.option_strings == ["--toy-knob"] and knob.help == "how much toy to use (default: 3)"
    assert parser.parse_args(["train", "--toy-knob", "5"]).toy_knob == 5
