import json

import numpy as np
import pytest
import torch

from dynamicvit.core.files import CheckpointError
from dynamicvit.experiments.demo import DemoConfig, run_demo, teacher_config
from dynamicvit.experiments.item_overlap import item_tokens, overlap


def test_quick_demo_writes_full_report(tmp_path, fake_fashion):
    out = tmp_path / "demo"
    summary = run_demo(DemoConfig.quick(out_dir=str(out), data_dir=str(fake_fashion), progress=False))
    for name in ("report.md", "report.html", "curves.png", "kept_tokens.png", "summary.json"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "summary.json").read_text())["keep_rate"] == 0.7
    assert summary["sparse"]["kept_tokens"] == [25, 17, 12] and summary["num_patches"] == 36
    assert summary["sparse"]["gmacs"] < 0.65 * summary["dense"]["gmacs"]  # >= 35% fewer MACs
    report = (out / "report.md").read_text()
    assert f"{summary['sparse']['top1']:.2f}" in report and "random tokens" in report
    tome, overlaps = summary["tome"], summary["item_overlap"]
    assert abs(tome["gmacs"] / summary["sparse"]["gmacs"] - 1) < 0.1 and f"ToMe r={tome['r']:g}" in report
    evit = summary["evit"]  # the other training-free rival, tuned to the same MACs
    assert abs(evit["macs_fraction"] - summary["sparse"]["gmacs"] / summary["dense"]["gmacs"]) < 0.05
    assert f"| EViT keep rate {evit['keep_rate']:g} on the teacher (no training) | {evit['top1']:.2f} |" in report
    assert overlaps["images"] == 64 and set(overlaps) >= {"learned", "random", "item_tokens"}
    for rule in ("learned", "random"):
        assert all(len(overlaps[rule][k]) == 3 for k in ("precision", "recall"))
        assert all(0 <= v <= 1 for k in ("precision", "recall") for v in overlaps[rule][k])
        assert f"| 3 | 12 | {overlaps['learned']['precision'][2]:.3f} |" in report
    page = (out / "report.html").read_text()
    assert "<table>" in page and 'src="kept_tokens.png"' in page and 'src="curves.png"' in page
    # a second run into the folder is refused unless it resumes (reusing the finished runs) or overwrites
    with pytest.raises(ValueError, match=r"already holds results \(.*report.md.*\); pass --resume"):
        run_demo(DemoConfig.quick(out_dir=str(out), data_dir=str(fake_fashion), progress=False))
    logs = {run: (out / run / "metrics.jsonl").read_bytes() for run in ("teacher", "sparse")}
    again = run_demo(DemoConfig.quick(out_dir=str(out), data_dir=str(fake_fashion), progress=False, resume=True))
    assert again["sparse"]["top1"] == summary["sparse"]["top1"]
    assert {run: (out / run / "metrics.jsonl").read_bytes() for run in logs} == logs  # nothing trained again
    # a demo of another configuration in the same folder is refused, naming what differs
    with pytest.raises(ValueError, match=r"another configuration \(batch_size 32 -> 16"):
        run_demo(
            DemoConfig.quick(out_dir=str(out), data_dir=str(fake_fashion), progress=False, batch_size=16, resume=True)
        )
    assert not list(out.glob(".dynamicvit*"))  # no lock or temporary file left behind


def test_item_tokens_are_the_patches_an_item_pixel_falls_in():
    mask = np.zeros((8, 8), dtype=bool)
    mask[3, 3] = mask[4, 4] = True  # two pixels, two patches of 4x4: (0, 0) and (1, 1)
    assert item_tokens(mask, (4, 4)).tolist() == [True, False, False, True]
    with pytest.raises(ValueError, match="does not tile"):
        item_tokens(mask, (3, 3))


def test_precision_and_recall_of_kept_tokens_by_hand():
    kept = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    item = torch.tensor([[1, 1, 0, 0, 1, 1], [1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    precision, recall = overlap(kept, item)
    # image 0: 2 of 3 kept on the item, 2 of 4 item tokens kept; image 1 keeps nothing; image 2 has no item
    assert precision.tolist() == pytest.approx([2 / 3, 0.0, 0.0])
    assert recall.tolist() == pytest.approx([0.5, 0.0, 1.0])


def test_the_demo_starts_from_the_shipped_teacher_when_its_settings_match(tmp_path, fake_fashion, monkeypatch):
    """A teacher shipped from a demo that trained it is used, not retrained, by a demo of the same settings
    (same weights: same dense top-1; no teacher seconds; the report names where it came from), whatever the
    student's seed; a demo of other settings, or with --train-teacher, trains its own."""
    from dynamicvit.experiments import shipped_teacher

    monkeypatch.setattr(shipped_teacher, "ASSETS", tmp_path / "assets")
    quick = dict(data_dir=str(fake_fashion), progress=False)
    trained = run_demo(DemoConfig.quick(out_dir=str(tmp_path / "a"), train_teacher=True, **quick))
    shipped_teacher.ship_teacher(tmp_path / "a" / "teacher", trained["teacher_seconds"], "dynamicvit demo --quick")
    reused = run_demo(DemoConfig.quick(out_dir=str(tmp_path / "b"), **quick))
    assert reused["teacher_seconds"] == 0 and reused["teacher_shipped"]["command"] == "dynamicvit demo --quick"
    same = ("top1", "gmacs", "kept_tokens")
    assert all(reused[m].get(k) == trained[m].get(k) for m in ("dense", "sparse", "tome", "evit") for k in same)
    assert "teacher shipped with the package" in (tmp_path / "b" / "report.md").read_text()
    assert (tmp_path / "b" / "curves.png").stat().st_size > 0
    # training the teacher into a folder that holds the shipped one: its weights are no training checkpoint
    with pytest.raises(CheckpointError, match=r"teacher/last\.pth is not a training checkpoint"):
        run_demo(DemoConfig.quick(out_dir=str(tmp_path / "b"), train_teacher=True, resume=True, **quick))
    # another student seed starts from the same teacher; other data would need another
    other_seed = run_demo(DemoConfig.quick(out_dir=str(tmp_path / "c"), seed=1, **quick))
    assert other_seed["teacher_shipped"] and other_seed["dense"]["top1"] == trained["dense"]["top1"]
    assert shipped_teacher.shipped_teacher(teacher_config(DemoConfig.quick(distractors=1, **quick))) is None


def test_the_shipped_teacher_is_the_default_demos_and_says_how_it_was_made():
    """Changing the demo's teacher recipe or data without re-shipping its teacher would make every demo train
    it again: the shipped files must match the defaults (re-ship with scripts/ship_demo_teacher.py)."""
    from dynamicvit.builder import load_trained
    from dynamicvit.experiments.shipped_teacher import ASSETS, shipped_teacher

    for name in ("demo_teacher.pth", "demo_teacher.json"):  # a clone lacks what .gitignore kept out of git
        assert (ASSETS / name).is_file(), f"{ASSETS / name} is not shipped: is it committed?"
    weights = shipped_teacher(teacher_config(DemoConfig()))
    assert weights is not None, "the shipped teacher was trained with other settings than the demo's defaults"
    record = json.loads(weights.with_suffix(".json").read_text())
    assert {"command", "commit", "machine", "date"} <= set(record["provenance"]) and record["train_seconds"] > 0
    assert len(record["metrics"]) == DemoConfig().teacher_epochs and record["steps"]
    model, cfg = load_trained(weights)
    assert cfg.model.dense and model(torch.zeros(1, 1, 48, 48)).shape == (1, 10)


def test_a_seeds_row_is_its_demo_then_read_back_not_run_again(tmp_path, fake_fashion, monkeypatch):
    """scripts/demo_seeds.py resumes: a seed whose demo finished is read from its summary, not trained again."""
    from dynamicvit.experiments import demo_seeds

    cfg = DemoConfig.quick(out_dir=str(tmp_path / "seed-1"), seed=1, data_dir=str(fake_fashion), progress=False)
    row = demo_seeds.seed_row(cfg)
    assert row["seed"] == 1 and set(row["top1"]) == {"dense", "sparse", "random", "tome", "evit"}
    assert row["macs_fraction"]["dense"] == 1 and 0 < row["macs_fraction"]["sparse"] < 1
    monkeypatch.setattr(demo_seeds, "run_demo", lambda *a, **k: pytest.fail("a finished seed ran again"))
    assert demo_seeds.seed_row(cfg) == row


def test_the_demo_flags_reach_the_students_training_config(tmp_path, monkeypatch, capsys):
    """``demo --mask-rule/--predictor-width/--mask-noise`` set the student's run config (what its checkpoint
    saves), not only the report's label."""
    from dynamicvit.cli import main
    from dynamicvit.experiments import demo

    seen = {}

    def stop(student_cfg, cfg):
        seen.update(student_cfg.to_dict())
        raise SystemExit(0)

    monkeypatch.setattr(demo, "_teacher", lambda teacher_cfg, cfg: (None, tmp_path / "t.pth", 0.0, True))
    monkeypatch.setattr(demo, "_train", stop)
    flags = ["--mask-rule", "topk", "--predictor-width", "0.5", "--mask-noise", "frozen"]
    with pytest.raises(SystemExit):
        main(["demo", "--out", str(tmp_path / "demo"), *flags])
    assert (seen["mask_rule"], seen["predictor_width"], seen["mask_noise"]) == ("topk", 0.5, "frozen")
