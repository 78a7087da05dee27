"""Searched keep schedules against the paper's ρ, ρ², ρ³ on a proxy's trained DynamicViT students.

For each DynamicViT student of a leaderboard entry (``runs/leaderboard/PROXY/runs/REGIME/ENTRY_BUDGET_sSEED``;
``--entry``, default ``dynamicvit``, the paper's rule),
search the per-stage keep fractions on held-out training images (those after the run's training limit)
for the run's MACs budget, then evaluate both schedules on the leaderboard's test canvases. Each student's row
is written the moment it is done (``runs/leaderboard/PROXY/schedule/rows``, the folder held by this process), so
a killed search resumes without repeating one; a rerun with another ``--held-out`` is refused. It reads the
board's finished runs only, so it can run while the board goes on. Writes
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
from dynamicvit.core.files import FolderInUseError, atomic_write_text, folder_lock
from dynamicvit.core.flops import count_flops
from dynamicvit.core.provenance import provenance
from dynamicvit.experiments.leaderboard.entries import get_entry
from dynamicvit.experiments.leaderboard.proxies import get_proxy, proxy_config
from dynamicvit.experiments.rows import RowStore
from dynamicvit.methods.schedule_search import search_schedule
from dynamicvit.tasks.evaluate import evaluate

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _held_out(cfg, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` training images after the training limit (no run of the leaderboard trained on them)."""
    full = build_run_dataset(cfg.replace(train_limit=cfg.data.train_limit + count), "train")
    samples = [full[i] for i in range(cfg.data.train_limit, cfg.data.train_limit + count)]
    return torch.stack([s[0] for s in samples]), torch.tensor([s[1] for s in samples])


def _search(path: Path, entry: str, test_seed: int, held_out: int) -> dict:
    """The row of one student: its top-1 under ρ, ρ², ρ³ and under the schedule searched for its budget."""
    regime = path.parent.parent.name
    budget, seed = re.fullmatch(rf"{re.escape(entry)}_([\d.]+)_s(\d+)", path.parent.name).groups()
    model, cfg = load_trained(str(path))
    cfg = cfg.replace(seed=test_seed)
    test_set = build_run_dataset(cfg, "test")
    dense = load_trained(cfg.model.teacher_checkpoint)[0]
    images, labels = _held_out(cfg, held_out)
    before = evaluate(model, test_set, cfg)["top1"]
    found = search_schedule(model, images, labels, float(budget), count_flops(dense).total)
    after = evaluate(model, test_set, cfg)["top1"]
    return {"entry": entry, "regime": regime, "budget": float(budget), "seed": int(seed), "rho_top1": before,
            "searched_top1": after, **found}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", default="demo", help="the leaderboard proxy whose students to search")
    parser.add_argument("--entry", default="dynamicvit", help="the board's DynamicViT entry whose students to search")
    parser.add_argument("--out", default="runs/leaderboard", help="the leaderboard runs' parent folder")
    parser.add_argument("--held-out", type=int, default=2000, help="held-out training images to search on")
    parser.add_argument("--quick", action="store_true", help="the board was run with --quick (the tests' sizes)")
    args = parser.parse_args()
    try:
        entry = get_entry(args.entry)
        proxy = get_proxy(args.proxy, args.quick)
    except ValueError as err:
        raise SystemExit(f"schedule_search.py: error: {err}") from None
    runs = sorted((Path(args.out) / proxy.name / "runs").glob(f"*/{entry.name}_*_s*/last.pth"))
    if entry.method != "dynamicvit" or not runs:
        raise SystemExit(f"schedule_search.py: error: no DynamicViT students of {entry.name} under "
                         f"{Path(args.out) / proxy.name / 'runs'}")  # fmt: skip
    folder = Path(args.out) / proxy.name / "schedule"
    # every row is scored on the board's test canvases (a seed redraws them)
    test_seed = proxy_config(proxy, folder, folder, quick=args.quick).run.seed
    try:
        with folder_lock(folder / "rows"):
            store = RowStore(folder, {"held_out": args.held_out, "test_seed": test_seed})
            for path in runs:
                key = f"{path.parent.parent.name}_{path.parent.name}"
                if not store.has(key):
                    store.write(key, _search(path, entry.name, test_seed, args.held_out))
                    print(store.read(key), flush=True)
            rows = store.all()
    except (ValueError, FolderInUseError) as err:  # another recipe or a search running: one line, before any work
        raise SystemExit(f"schedule_search.py: error: {err}") from None
    record = provenance(f"python scripts/schedule_search.py {' '.join(a for a in sys.argv[1:])}")
    record["command"] = re.sub(r"\s*--out\s+\S+", "", record["command"])
    results = DOCS / "results" / f"schedule-{args.proxy}.json"
    results = Path(args.out) / args.proxy / "schedule.json" if args.quick else results
    atomic_write_text(results, json.dumps({"rows": rows, "provenance": record}, indent=2))


if __name__ == "__main__":
    main()
