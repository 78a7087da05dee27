"""Searched keep schedules against the paper's ρ, ρ², ρ³ on a proxy's trained DynamicViT students.

For each DynamicViT student of a leaderboard (``runs/leaderboard/PROXY/runs/REGIME/dynamicvit_BUDGET_sSEED``),
search the per-stage keep fractions on held-out training images (those after the run's training limit)
for the run's MACs budget, then evaluate both schedules on the leaderboard's test canvases. Each student's row
is written the moment it is done (``runs/leaderboard/PROXY/schedule/rows``), so a killed search resumes
without repeating one; a rerun with another ``--held-out`` is refused. Writes
``docs/results/schedule-PROXY.json`` (with ``--quick``: ``OUT/PROXY/schedule.json``, beside the test board).

    python scripts/schedule_search.py --proxy demo --out runs/leaderboard
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

from dynamicvit.builder import build_run_dataset, load_trained
from dynamicvit.core.files import atomic_write_text
from dynamicvit.core.flops import count_flops
from dynamicvit.core.provenance import provenance
from dynamicvit.experiments.leaderboard import open_board
from dynamicvit.experiments.rows import RowStore
from dynamicvit.methods.schedule_search import search_schedule
from dynamicvit.tasks.evaluate import evaluate

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _held_out(cfg, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` training images after the training limit (no run of the leaderboard trained on them)."""
    full = build_run_dataset(cfg.replace(train_limit=cfg.data.train_limit + count), "train")
    samples = [full[i] for i in range(cfg.data.train_limit, cfg.data.train_limit + count)]
    return torch.stack([s[0] for s in samples]), torch.tensor([s[1] for s in samples])


def _search(path: Path, test_seed: int, held_out: int) -> dict:
    """The row of one student: its top-1 under ρ, ρ², ρ³ and under the schedule searched for its budget."""
    regime = path.parent.parent.name
    budget, seed = re.match(r"dynamicvit_([\d.]+)_s(\d+)", path.parent.name).groups()
    model, cfg = load_trained(str(path))
    cfg = cfg.replace(seed=test_seed)
    test_set = build_run_dataset(cfg, "test")
    dense = load_trained(cfg.model.teacher_checkpoint)[0]
    images, labels = _held_out(cfg, held_out)
    before = evaluate(model, test_set, cfg)["top1"]
    found = search_schedule(model, images, labels, float(budget), count_flops(dense).total)
    after = evaluate(model, test_set, cfg)["top1"]
    return {"regime": regime, "budget": float(budget), "seed": int(seed), "rho_top1": before, "searched_top1": after,
            **found}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", default="demo", help="the leaderboard proxy whose students to search")
    parser.add_argument("--out", default="runs/leaderboard", help="the leaderboard runs' parent folder")
    parser.add_argument("--held-out", type=int, default=2000, help="held-out training images to search on")
    parser.add_argument("--quick", action="store_true", help="the board was run with --quick (the tests' sizes)")
    parser.add_argument("--data-dir", default=None, help="the board's Fashion-MNIST folder (default: the system's)")
    args = parser.parse_args()
    runs = sorted((Path(args.out) / args.proxy / "runs").glob("*/dynamicvit_*_s*/last.pth"))
    if not runs:
        raise SystemExit(f"no DynamicViT students under {Path(args.out) / args.proxy / 'runs'}")
    with open_board(args.proxy, args.out, quick=args.quick, data_dir=args.data_dir) as board:
        test_seed = board.cfg.run.seed  # every row is scored on the board's test canvases (a seed redraws them)
    try:
        store = RowStore(Path(args.out) / args.proxy / "schedule", {"held_out": args.held_out, "test_seed": test_seed})
    except ValueError as err:  # another recipe: one line, before any search
        raise SystemExit(f"schedule_search.py: error: {err}") from None
    for path in runs:
        key = f"{path.parent.parent.name}_{path.parent.name}"
        if not store.has(key):
            store.write(key, _search(path, test_seed, args.held_out))
            print(store.read(key), flush=True)
    rows = store.all()
    record = provenance(f"python scripts/schedule_search.py {' '.join(a for a in sys.argv[1:])}")
    record["command"] = re.sub(r"\s*--out\s+\S+", "", record["command"])
    results = DOCS / "results" / f"schedule-{args.proxy}.json"
    results = Path(args.out) / args.proxy / "schedule.json" if args.quick else results
    atomic_write_text(results, json.dumps({"rows": rows, "provenance": record}, indent=2))


if __name__ == "__main__":
    main()
