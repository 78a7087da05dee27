"""A leaderboard page from a board's result file: the leader in bold only where its lead holds, the entries of
a tie marked, a sentence per budget that follows the intervals, and a page for a board not yet published."""

import numpy as np

from dynamicvit.docsgen.leaderboard import leaderboard_table
from dynamicvit.docsgen.tables import render
from dynamicvit.experiments.leaderboard.rows import pack_correct
from dynamicvit.experiments.leaderboard.summary import group_rows, leads


def _summary() -> dict:
    base = np.random.default_rng(0).random(4000) < 0.7
    rows = []
    for budget, flips in ((0.5, {"tome": 0, "evit": 400, "mctf": 405}), (0.65, {"tome": 0, "evit": 400})):
        for entry, n in flips.items():
            for seed in (0, 1):
                c = base.copy()
                c[: n + seed] = True
                rows.append({"regime": "frozen", "budget": budget, "entry": entry, "method": entry, "seed": seed,
                             "trained": True, "top1": 100 * c.mean(), "macs_fraction": budget, "gmacs": 1.0,
                             "knob": {}, "searched": {}, "train_seconds": 2.0, "images": 4000,
                             "correct": pack_correct(c)})  # fmt: skip
    groups = group_rows(rows)
    return {
        "proxy": {"grid": 6, "data": {"canvas": 48}},
        "teacher": {"val_top1": 80.0, "best_epoch": 9, "epochs": 12, "max_epochs": 30, "train_seconds": 3600.0},
        "dense": {"top1": 80.5, "gmacs": 2.0, "images": 4000},
        "labels": {"tome": "ToMe", "evit": "EViT", "mctf": "MCTF"},
        "rows": groups,
        "leads": leads(groups, {"tome": "ToMe", "evit": "EViT", "mctf": "MCTF"}),
        "recipe": {"train_limit": 20000, "epochs": 1},
        "speed": {},
    }


def test_bold_only_where_the_lead_holds_and_ties_marked():
    table = leaderboard_table(_summary())
    evit, mctf = (next(line for line in table.splitlines() if line.startswith(f"| {m} |")) for m in ("EViT", "MCTF"))
    assert mctf.split(" | ")[1].startswith("= ") and evit.split(" | ")[1].startswith("= ")  # 0.5: a tie
    assert evit.split(" | ")[2].startswith("**")  # 0.65: EViT's lead over ToMe holds
    assert "MCTF ties with EViT" in table and "EViT leads: " in table and "Not timed yet" in table
    assert "10 trained runs, 0.0 h of training in all" in table  # the board's measured cost: 5 rows × 2 seeds


def test_a_board_not_yet_published_says_so(tmp_path):
    assert render("leaderboard-grid14", tmp_path).startswith("*No result file yet")


def test_the_summary_names_each_boards_leader_or_tie_with_the_gap_to_the_runner_up():
    from dynamicvit.docsgen.leaderboard import leaderboards_summary

    table = leaderboards_summary(_summary(), None)
    line = lambda budget: next(x for x in table.splitlines() if x.startswith(f"| 6×6 | frozen | {budget} |"))  # noqa: E731
    tie, lead = line("0.5"), line("0.65")
    assert "| MCTF = EViT |" in tie or "| EViT = MCTF |" in tie
    assert "| EViT |" in lead and "| –: – |" in lead  # no DynamicViT entry on this board
    assert table.endswith("*1 of 2 boards not yet published.*")
    assert leaderboards_summary(None, None).startswith("*No board published yet")
