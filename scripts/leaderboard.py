"""Run a proxy's leaderboard in passes that resume, and publish its result file and plots into the docs.

    python scripts/leaderboard.py --proxy demo                 # teacher to convergence, then every row
    python scripts/leaderboard.py --proxy demo --extra-seed    # a third seed for the top three of each budget
    python scripts/leaderboard.py --proxy demo --time          # the speed pass (run it with nothing else running)
    python scripts/leaderboard.py --proxy demo --publish       # docs/results/leaderboard-demo.json and plots
    python scripts/leaderboard.py --proxy demo --quick         # seconds: the path the tests use

Every finished row is written at once; a rerun skips finished rows and refuses a changed recipe.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

from dynamicvit.config import REGIMES
from dynamicvit.core.files import atomic_write_text
from dynamicvit.experiments.leaderboard import PROXIES, entries, open_board
from dynamicvit.experiments.leaderboard.plots import save_board_plots
from dynamicvit.experiments.leaderboard.summary import group_rows, summarise, top_entries

DOCS = Path(__file__).resolve().parent.parent / "docs"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", required=True, choices=list(PROXIES), help="which token grid")
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES), help="regimes to run")
    parser.add_argument("--budgets", nargs="+", type=float, default=None, help="MACs budgets (default: the proxy's)")
    parser.add_argument(
        "--entries",
        nargs="+",
        default=None,
        choices=list(entries()),
        help="methods and DynamicViT variants (default: every one the regime runs on this grid)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of the trained and random rows")
    parser.add_argument("--extra-seed", action="store_true", help="one more seed for the top three of each budget")
    parser.add_argument("--time", action="store_true", help="the speed pass instead of the accuracy pass")
    parser.add_argument("--publish", action="store_true", help="write the result file and plots into the docs")
    parser.add_argument("--out", default="runs/leaderboard", help="parent folder of the boards")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: the data set's lookup)")
    parser.add_argument("--quick", action="store_true", help="seconds-long sizes; nothing copied into the docs")
    args = parser.parse_args(argv)
    if args.budgets and any(not 0 < b <= 1 for b in args.budgets):
        parser.error(f"--budgets must be fractions of the dense MACs in (0, 1], got {args.budgets}")
    return args


def publish(summary: dict, proxy: str) -> None:
    """The result file and the plots of the board, into the docs."""
    atomic_write_text(DOCS / "results" / f"leaderboard-{proxy}.json", json.dumps(summary, indent=1))
    with tempfile.TemporaryDirectory() as tmp:
        for plot in save_board_plots(summary, tmp):
            shutil.copy(plot, DOCS / "leaderboards" / f"{proxy}-{plot.name}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        run(args, argv)
    except ValueError as err:  # bad input, a board folder in use or started with another recipe: one line
        sys.exit(f"leaderboard.py: error: {err}")


def run(args: argparse.Namespace, argv: list[str] | None) -> None:
    """The pass ``args`` asks for, then (with ``--publish``) the docs' result file."""
    command = "python scripts/leaderboard.py " + re.sub(
        r"\s*--(out|data-dir)\s+\S+", "", " ".join(argv or sys.argv[1:])
    )
    with open_board(args.proxy, args.out, args.quick, args.data_dir) as board:
        if args.time:
            board.time(args.regimes, args.budgets, batch=4 if args.quick else 32, repeats=1 if args.quick else 10)
        elif args.extra_seed:
            extra = max(args.seeds) + 1
            for regime, budget, name in top_entries(group_rows(board.store.all())):
                board.run([regime], [budget], [name], [*args.seeds, extra])
        else:
            board.run(args.regimes, args.budgets, args.entries, args.seeds)
        if args.publish and not args.quick:
            speed_file = board.folder / "speed.json"
            speed = json.loads(speed_file.read_text()) if speed_file.exists() else None
            publish(summarise(board, speed, command.strip()), args.proxy)


if __name__ == "__main__":
    main()
