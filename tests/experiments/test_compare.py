import copy
import json

import pytest
import torch
from conftest import tiny_cfg

from dynamicvit.builder import build_dense_for_data, build_run_dataset
from dynamicvit.cli import main
from dynamicvit.core.flops import count_flops
from dynamicvit.experiments.compare import run_compare, trains
from dynamicvit.methods import METHODS, apply_method, set_budget
from dynamicvit.tasks.evaluate import evaluate
from dynamicvit.train.trainer import Trainer


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, fake_fashion):
    tmp = tmp_path_factory.mktemp("compare_teacher")
    Trainer(tiny_cfg(tmp, fake_fashion, dense=True, epochs=1)).fit()
    return tmp / "run" / "last.pth"


def test_compare_all_methods_at_matched_macs(tmp_path, fake_fashion, teacher):
    cfg = tiny_cfg(tmp_path, fake_fashion, teacher_checkpoint=str(teacher), epochs=1, freeze_backbone_epochs=1)
    # 16 patches: MCTF stops at 10 tokens (its authors' floor), about 0.71 of the dense MACs
    summary = run_compare(cfg, budgets=[0.75, 0.9], out_dir=str(tmp_path / "cmp"), bench_batch=4, bench_repeats=1)
    rows = summary["rows"]
    assert len(rows) == 2 * len(METHODS)
    for row in rows:
        if row["method"] != "diffrate":  # DiffRate's cost is what its search reached (four steps here)
            assert abs(row["macs_fraction"] - row["budget"]) < 0.1, row
        assert row["trained"] == (row["method"] in ("dynamicvit", "diffrate"))  # only their own parameters learn
        assert row["img_per_s"] > 0 and row["img_per_s_b1"] > 0 and row["regime"] == "frozen"
    assert (tmp_path / "cmp" / "frozen" / "dynamicvit_0.75_s0" / "last.pth").exists()
    # an untrained method's row is what the method gives on the dense weights at that budget
    test_set = build_run_dataset(cfg, "test")
    dense = build_dense_for_data(cfg, test_set).eval()
    static = apply_method(copy.deepcopy(dense), "static")
    set_budget(static, 0.75, count_flops(dense).total)
    row = next(r for r in rows if (r["method"], r["budget"]) == ("static", 0.75))
    assert row["top1"] == evaluate(static, test_set)["top1"] and row["knob"] == {
        "keep_rate": round(static.keep_rate, 4)
    }
    for name in ("compare.json", "compare.md", "acc_vs_gmacs.png", "acc_vs_img_per_s.png"):
        assert (tmp_path / "cmp" / name).stat().st_size > 0
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["budgets"] == [0.75, 0.9]
    assert "ToMe" in (tmp_path / "cmp" / "compare.md").read_text()


def test_seeds_and_regimes(tmp_path, fake_fashion, teacher):
    """Trained rows run once per seed (mean and spread reported), training-free rows once; both regimes;
    each budget gets a sentence naming its leader; the knob of an integer-knob method reaches its training."""
    cfg = tiny_cfg(tmp_path, fake_fashion, teacher_checkpoint=str(teacher), epochs=1, freeze_backbone_epochs=0)
    summary = run_compare(
        cfg,
        budgets=[0.7],
        methods=["mctf", "topk"],
        out_dir=str(tmp_path / "cmp"),
        bench_batch=2,
        bench_repeats=1,
        seeds=[0, 1],
        regimes=["frozen", "finetune"],
    )
    rows = {(r["regime"], r["method"]): r for r in summary["rows"]}
    assert not rows["frozen", "mctf"]["trained"] and rows["frozen", "mctf"]["top1_runs"] == [
        rows["frozen", "mctf"]["top1"]
    ]
    tuned = rows["finetune", "mctf"]
    assert tuned["trained"] and len(tuned["top1_runs"]) == 2 and tuned["seeds"] == [0, 1]
    assert tuned["top1"] == pytest.approx(sum(tuned["top1_runs"]) / 2)
    assert tuned["top1_std"] == pytest.approx(abs(tuned["top1_runs"][0] - tuned["top1_runs"][1]) / 2**0.5)
    saved = torch.load(tmp_path / "cmp" / "finetune" / "mctf_0.7_s1" / "last.pth", weights_only=False)
    assert saved["config"]["merge_r"] == tuned["knob"]["r"] and saved["config"]["seed"] == 1
    report = (tmp_path / "cmp" / "compare.md").read_text()
    assert report.count("leads") == 2 and "(frozen)" in report and "(finetune)" in report


def test_baselines_train_when_the_backbone_does(tmp_path, fake_fashion):
    cfg = tiny_cfg(tmp_path, fake_fashion, epochs=2, freeze_backbone_epochs=1)
    assert trains("evit", cfg) and trains("dynamicvit", cfg)
    cfg.schedule.freeze_backbone_epochs = 2
    assert not trains("evit", cfg) and trains("dynamicvit", cfg)


def test_evit_fine_tunes_with_the_engine(tmp_path, fake_fashion, teacher):
    cfg = tiny_cfg(tmp_path, fake_fashion, teacher_checkpoint=str(teacher), method="evit", epochs=1)
    record = Trainer(cfg).fit()
    assert "train_cls_kl" in record and "train_ratio" not in record and "train_token_mse" not in record


def test_compare_cli_errors(tmp_path, fake_fashion, teacher, capsys):
    base = ["compare", "--data", "fashion-mnist", "--data-dir", str(fake_fashion), "--img-size", "28"]
    assert main([*base, "--teacher-checkpoint", str(teacher), "--budgets", "1.5"]) == 2
    assert "argument --budgets: must be in (0, 1], got 1.5" in capsys.readouterr().err
    assert main([*base, "--model", "vit_tiny_patch16_224"]) == 2
    assert "--teacher-checkpoint" in capsys.readouterr().err


def _compare(out, data_dir, teacher, fault=None, resume=False):
    """``dynamicvit compare`` in a child process (killed by ``fault``: ``DYNAMICVIT_FAULT``'s ``name:n``)."""
    import os
    import subprocess
    import sys

    from conftest import TINY_KW

    args = ["--model", "vit_tiny_patch16_224", "--model-kwargs", json.dumps(TINY_KW), "--data", "fashion-mnist"]
    args += ["--data-dir", str(data_dir), "--img-size", "28", "--train-limit", "32", "--val-limit", "16"]
    args += ["--batch-size", "16", "--epochs", "1", "--freeze-backbone-epochs", "0", "--warmup-epochs", "0"]
    args += ["--teacher-checkpoint", str(teacher), "--budgets", "0.75", "--methods", "static", "dynamicvit", "topk"]
    args += ["--bench-batch", "2", "--bench-repeats", "1", "--deterministic", "--no-progress", "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "DYNAMICVIT_FAULT"}
    env |= {"DYNAMICVIT_FAULT": fault} if fault else {}
    cmd = [sys.executable, "-m", "dynamicvit", "compare", *args, *(["--resume"] if resume else [])]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _measured(out) -> list[dict]:
    """The rows of a finished comparison without their timings (those differ from run to run)."""
    rows = json.loads((out / "compare.json").read_text())["rows"]
    return [{k: v for k, v in r.items() if k not in ("img_per_s", "img_per_s_b1", "speedup")} for r in rows]


@pytest.mark.promise(
    "killed runs",
    "`compare` killed at seeded points and rerun with `--resume` gives the uninterrupted run's rows, "
    "finished rows not evaluated again; another recipe is refused in one line",
)
def test_killed_compare_resumes_with_every_row_once(tmp_path, fake_fashion, teacher):
    """Killed right after writing a row, while training a row, and while writing its report (each kill point
    drawn from a seeded generator among those), then rerun with --resume: the rows of an uninterrupted run,
    each once; a rerun under another recipe is refused in one line."""
    import random
    import signal

    assert _compare(tmp_path / "full", fake_fashion, teacher).returncode == 0
    out, rows = tmp_path / "killed", tmp_path / "killed" / "rows"
    points = random.Random(0).sample(["row:1", "row:2", "update:1", "update:2"], 3)
    for kill in points:
        assert _compare(out, fake_fashion, teacher, kill, resume=out.exists()).returncode == -signal.SIGKILL
        assert not list(rows.glob(".dynamicvit-*"))  # no half-written row
    finished = {p: p.stat().st_mtime_ns for p in rows.glob("*.json")}
    assert finished  # some rows were done before the last kill
    done = _compare(out, fake_fashion, teacher, resume=True)
    assert done.returncode == 0, done.stderr
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # read back, not evaluated and written again
    names = sorted(p.stem for p in rows.glob("*.json"))
    assert names == ["finetune_0.75_dynamicvit", "finetune_0.75_static", "finetune_0.75_topk"]  # backbone trained
    assert _measured(out) == _measured(tmp_path / "full")
    recipe = json.loads((out / "recipe.json").read_text())
    (out / "recipe.json").write_text(json.dumps({**recipe, "lr": 0.5}))
    refused = _compare(out, fake_fashion, teacher, resume=True)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "another recipe (lr 0.5 →" in refused.stderr
