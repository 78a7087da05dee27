"""Run one proxy's leaderboard and copy its result file and plots into the docs.

python scripts/leaderboard.py --proxy demo            # about 2 hours on 2 CPU cores
python scripts/leaderboard.py --proxy demo --quick    # seconds: the path the tests use
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from dynamicvit.methods import METHODS
from dynamicvit.tools.leaderboard import PROXIES, run_leaderboard

DOCS = Path(__file__).resolve().parent.parent / "docs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", required=True, choices=list(PROXIES), help="which token grid")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds of the trained rows")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), help="methods")
    parser.add_argument("--out", default="runs/leaderboard", help="parent folder of the proxies' runs")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: the data set's lookup)")
    parser.add_argument(
        "--limits", type=int, nargs=2, default=None, metavar=("TRAIN", "TEST"), help="images (default: SIZES)"
    )
    parser.add_argument("--quick", action="store_true", help="seconds-long sizes; nothing copied into the docs")
    args = parser.parse_args()
    run_leaderboard(
        args.proxy, args.out, tuple(args.seeds), tuple(args.methods), args.quick, args.data_dir, limits=args.limits
    )
    if not args.quick:
        src = Path(args.out) / args.proxy / "compare"
        shutil.copy(src / "compare.json", DOCS / "results" / f"leaderboard-{args.proxy}.json")
        for plot in ("acc_vs_gmacs.png", "acc_vs_img_per_s.png"):
            shutil.copy(src / plot, DOCS / "leaderboards" / f"{args.proxy}-{plot}")


if __name__ == "__main__":
    main()
