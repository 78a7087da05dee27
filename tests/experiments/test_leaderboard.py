"""The leaderboards: rows written as they finish, resumed after a kill, refused under another recipe; per-image
results and paired intervals; a converged teacher with its curve."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dynamicvit.core.flops import count_flops
from dynamicvit.experiments.leaderboard import PROXIES, entries, get_proxy, open_board
from dynamicvit.experiments.leaderboard.entries import default_entries
from dynamicvit.experiments.leaderboard.paired import Lead, paired_difference
from dynamicvit.experiments.leaderboard.rows import pack_correct, unpack_correct
from dynamicvit.experiments.leaderboard.summary import group_rows, leads, top_entries
from dynamicvit.experiments.teacher import converged

ROOT = Path(__file__).resolve().parents[2]
BOARD = ["--proxy", "demo", "--quick", "--entries", "static", "diffrate", "--budgets", "0.5", "--regimes", "frozen"]


def _run(out: Path, data_dir: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DYNAMICVIT_FAULT"}
    env["PYTHONPATH"] = str(ROOT)
    if fault:
        env["DYNAMICVIT_FAULT"] = fault
    script = str(ROOT / "scripts" / "leaderboard.py")
    cmd = [sys.executable, script, *BOARD, "--out", str(out), "--data-dir", str(data_dir)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _board(out: Path, data_dir: Path, fault: str | None = None) -> int:
    return _run(out, data_dir, fault).returncode


def _rows(out: Path) -> dict[str, dict]:
    rows = {p.stem: json.loads(p.read_text()) for p in sorted((out / "demo" / "rows").glob("*.json"))}
    return {k: {f: r.get(f) for f in ("top1", "correct", "macs_fraction", "knob")} for k, r in rows.items()}


@pytest.fixture(scope="module")
def board(tmp_path_factory, fake_fashion):
    out = tmp_path_factory.mktemp("board")
    assert _board(out, fake_fashion) == 0
    return out


def test_a_board_writes_every_row_with_its_per_image_results(board):
    rows = {p.stem: json.loads(p.read_text()) for p in (board / "demo" / "rows").glob("*.json")}
    assert set(rows) == {"dense", "frozen_0.5_static", "frozen_0.5_diffrate_s0", "frozen_0.5_diffrate_s1"}
    images = get_proxy("demo", quick=True).test_images
    for row in rows.values():
        correct = unpack_correct(row["correct"], images)
        assert 100 * correct.mean() == pytest.approx(row["top1"])
    diffrate = rows["frozen_0.5_diffrate_s0"]
    assert diffrate["trained"] and diffrate["train_seconds"] > 0 and set(diffrate["searched"]) >= {"prune", "merge"}
    curve = json.loads((board / "demo" / "teacher" / "curve.json").read_text())
    assert curve["curve"] and (board / "demo" / "teacher" / "teacher.pth").exists()
    assert not (board / "demo" / "teacher" / "last.pth").exists()  # converged: only its best weights stay


def test_the_speed_pass_times_models_that_cost_what_the_rows_did(board, fake_fashion):
    """Rebuilt from a row alone (no training run: those stay where they ran), a model costs the row's MACs."""
    with open_board("demo", board, quick=True, data_dir=str(fake_fashion)) as b:
        dense = b.dense()[0]
        for row in b.store.all():
            if row["entry"] != "dense":
                assert count_flops(b._rebuild(row, dense)).gmacs == pytest.approx(row["gmacs"]), row["key"]
        speed = b.time(["frozen"], [0.5], batch=2, repeats=1)
    assert set(speed["blocks"]["frozen_0.5"]) == {"dense", "static", "diffrate"}


@pytest.mark.promise(
    "killed runs",
    "a leaderboard killed while training its teacher, right after a row and while training a row, then "
    "rerun, holds the uninterrupted board's rows, each once",
)
def test_killed_board_loses_and_repeats_no_row(board, tmp_path, fake_fashion):
    """Killed while training the teacher, right after writing a row, and while training a row, then rerun:
    every row once, equal to an uninterrupted board's."""
    rows = tmp_path / "demo" / "rows"
    for fault, left in (("update:1", 0), ("row:2", 2), ("update:1", 2)):  # dense and static, then DiffRate
        assert _board(tmp_path, fake_fashion, fault) == -signal.SIGKILL
        assert len(list(rows.glob("*.json"))) == left and not list(rows.glob(".dynamicvit-*"))
    assert _board(tmp_path, fake_fashion) == 0
    assert _rows(tmp_path) == _rows(board)


@pytest.mark.promise(
    "killed runs",
    "a leaderboard rerun skips finished rows and refuses another recipe in one line",
)
def test_a_rerun_skips_finished_rows_and_refuses_another_recipe(board, fake_fashion):
    stamps = {p: p.stat().st_mtime_ns for p in (board / "demo" / "rows").glob("*.json")}
    with open_board("demo", board, quick=True, data_dir=str(fake_fashion)) as b:
        assert b.run(["frozen"], [0.5], ["static", "diffrate"]) == []
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    recipe = board / "demo" / "recipe.json"
    saved = recipe.read_text()
    older = {k: v for k, v in json.loads(saved).items() if k != "attention_prior"}  # a field added since: default
    recipe.write_text(json.dumps(older))
    try:
        with open_board("demo", board, quick=True, data_dir=str(fake_fashion)):
            pass
        recipe.write_text(json.dumps({**json.loads(saved), "lr": 0.5}))
        with (
            pytest.raises(ValueError, match=r"another recipe \(lr 0.5 → 0.001\)"),
            open_board("demo", board, quick=True, data_dir=str(fake_fashion)),
        ):
            pass
        done = _run(board, fake_fashion)
        assert done.returncode == 1 and done.stderr.count("\n") == 1 and "another recipe" in done.stderr
    finally:
        recipe.write_text(saved)


def test_proxies_differ_by_token_grid_and_keep_students_off_the_held_out_canvases():
    assert {name: p.grid for name, p in PROXIES.items()} == {"demo": 6, "scale": 10, "grid14": 14}
    grid14 = PROXIES["grid14"].data
    assert grid14["item_size"] ** 2 == grid14["canvas"] ** 2 // 4  # items a quarter of the canvas on average
    with pytest.raises(ValueError, match="unknown proxy 'imagenet'"):
        get_proxy("imagenet")


def test_teacher_stops_when_held_out_top1_stops_rising():
    rising = [{"epoch": i, "val_top1": 50 + i} for i in range(1, 6)]
    assert not converged(rising, patience=3, min_gain=0.1)
    flat = rising + [{"epoch": 6 + i, "val_top1": 55.05} for i in range(3)]
    assert converged(flat, patience=3, min_gain=0.1) and not converged(flat[:-1], patience=3, min_gain=0.1)


def test_paired_difference_by_hand():
    a = np.zeros((1, 2000), dtype=bool)
    a[0, :1000] = True
    b = a.copy()
    b[0, :60] = False  # a right on 60 more images: 3 points, every other image the same
    gap, low, high = paired_difference(a, b)
    assert gap == pytest.approx(3.0) and 2.0 < low < 3.0 < high < 4.0  # the paired interval is narrow
    assert paired_difference(a, a) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="share their test images"):
        paired_difference(a, b[:, :10])


def test_leads_follow_the_intervals_and_skip_rows_off_budget():
    rng = np.random.default_rng(0)
    base = rng.random(4000) < 0.7

    def group(entry, flips, fraction, seeds=(0, 1)):
        runs = []
        for s in seeds:
            c = base.copy()
            c[: flips + s] = True
            runs.append({"regime": "frozen", "budget": 0.5, "entry": entry, "method": entry.split("+")[0],
                         "seed": s, "trained": True, "top1": 100 * c.mean(), "macs_fraction": fraction,
                         "gmacs": 1.0, "knob": {}, "searched": {}, "train_seconds": 1.0, "images": 4000,
                         "correct": pack_correct(c)})  # fmt: skip
        return runs

    rows = group("tome", 0, 0.5) + group("evit", 400, 0.5) + group("mctf", 405, 0.5) + group("ppt", 2000, 0.6)
    (found,) = leads(group_rows(rows), {})
    assert found["off_budget"] == ["ppt"] and found["leader"] == "mctf" and found["tied"] == ["evit"]
    assert "ties with evit" in found["sentence"] and "Not ranked" in found["sentence"]
    (found,) = leads(group_rows(group("tome", 0, 0.5) + group("evit", 400, 0.5)), {})
    assert found["tied"] == [] and "evit leads" in found["sentence"]
    assert top_entries(group_rows(rows), 2) == [("frozen", 0.5, "mctf"), ("frozen", 0.5, "evit")]
    with pytest.raises(ValueError, match="at least two"):
        Lead({"tome": np.ones((1, 3), dtype=bool)}, {})


def test_larger_grids_fine_tune_the_rivals_and_dynamicvits_best_variants():
    quiet = "dynamicvit+topk+light+frozen-noise"  # the same rows as dynamicvit+topk+light while frozen
    for small in (True, False):
        assert set(default_entries("frozen", small_grid=small)) == set(entries()) - {quiet}
    tuned = default_entries("finetune", small_grid=False)
    assert not {"random", "static", "pool", "dynamicvit+merge", "dynamicvit+prior+topk"} & set(tuned)
    assert {"tome", "mctf", "diffrate", "dynamicvit", "dynamicvit+topk", "dynamicvit+topk+light", quiet} <= set(tuned)
    assert default_entries("finetune", small_grid=True) == list(entries())


@pytest.mark.promise(
    "killed runs",
    "the schedule search killed after a row resumes without searching it again; another `--held-out` is "
    "refused in one line",
)
def test_killed_schedule_search_resumes_without_repeating_a_student(tmp_path, fake_fashion):
    """The schedule search over a board's fine-tuned DynamicViT students: killed after its first row, rerun,
    every student's row once, the first not searched again; another --held-out is refused in one line."""
    env = {k: v for k, v in os.environ.items() if k != "DYNAMICVIT_FAULT"} | {"PYTHONPATH": str(ROOT)}
    board = [str(ROOT / "scripts" / "leaderboard.py"), "--proxy", "demo", "--quick", "--entries", "dynamicvit"]
    board += ["--budgets", "0.5", "--regimes", "finetune", "--out", str(tmp_path), "--data-dir", str(fake_fashion)]
    subprocess.run([sys.executable, *board], env=env, check=True, capture_output=True, timeout=300)
    search = [sys.executable, str(ROOT / "scripts" / "schedule_search.py"), "--proxy", "demo", "--quick"]
    search += ["--out", str(tmp_path), "--held-out", "16"]
    killed = subprocess.run(search, env=env | {"DYNAMICVIT_FAULT": "row:1"}, capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    rows = tmp_path / "demo" / "schedule" / "rows"
    (first,) = rows.glob("*.json")
    stamp = first.stat().st_mtime_ns
    subprocess.run(search, env=env, check=True, capture_output=True, timeout=300)
    assert sorted(p.stem for p in rows.glob("*.json")) == ["finetune_dynamicvit_0.5_s0", "finetune_dynamicvit_0.5_s1"]
    assert first.stat().st_mtime_ns == stamp  # read back, not searched again
    result = json.loads((tmp_path / "demo" / "schedule.json").read_text())
    assert [(r["regime"], r["seed"]) for r in result["rows"]] == [("finetune", 0), ("finetune", 1)]
    other = subprocess.run([*search[:-1], "32"], env=env, capture_output=True, text=True, timeout=300)
    assert other.returncode == 1 and other.stderr.count("\n") == 1
    assert "another recipe (held_out 16 → 32)" in other.stderr


def test_a_finetune_only_entry_named_for_the_frozen_regime_is_not_planned_there(tmp_path):
    from dynamicvit.experiments.leaderboard.board import Board
    from dynamicvit.experiments.leaderboard.proxies import get_proxy, proxy_config

    proxy = get_proxy("scale", quick=True)
    board = Board(proxy, tmp_path, proxy_config(proxy, tmp_path, tmp_path / "t.pth"), {}, None)
    names = ["dynamicvit+topk+light", "dynamicvit+topk+light+frozen-noise"]
    planned = {(regime, entry.name) for regime, _, entry, _ in board.plan(("frozen", "finetune"), (0.5,), names, (0,))}
    assert planned == {("frozen", names[0]), ("finetune", names[0]), ("finetune", names[1])}
