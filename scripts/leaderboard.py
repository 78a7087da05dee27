"""Run one proxy's leaderboard and copy its result file and plots into the docs.

python scripts/leaderboard.py --proxy demo            # about 2 hours on 2 CPU cores
python scripts/leaderboard.py --proxy demo --quick    # seconds: the path the tests use
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

from dynamicvit.core.files import atomic_write_text
from dynamicvit.methods import METHODS
from dynamicvit.tools.leaderboard import PROXIES, add_variant, run_leaderboard
from dynamicvit.tools.report import save_tradeoff_plots

DOCS = Path(__file__).resolve().parent.parent / "docs"


def portable(summary: dict, out: Path, argv: str) -> dict:
    """The summary as the docs keep it: the command that wrote it (this script's), and paths under ``--out``
    written as under the default ``runs/leaderboard``, so no machine-local folder shows."""
    text = json.dumps(summary).replace(str(out.resolve()), "runs/leaderboard").replace(str(out), "runs/leaderboard")
    summary = json.loads(text)
    command = re.sub(r"\s*--out\s+\S+", "", argv)
    summary["provenance"]["command"] = f"python scripts/leaderboard.py {command}".strip()
    return summary


def variant_label(variant: dict) -> str:
    """The table name of a DynamicViT variant, e.g. ``DynamicViT (top-k rule, merged drops)``."""
    parts = [
        f"{variant['mask_rule']} rule" if "mask_rule" in variant else "",
        "merged drops" if variant.get("merge_dropped") else "",
    ]
    return "DynamicViT (" + ", ".join(p for p in parts if p) + ")"


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
    parser.add_argument("--mask-rule", default=None, help="a DynamicViT variant: its training mask rule")
    parser.add_argument("--merge-dropped", action="store_true", help="a DynamicViT variant: merged drops")
    parser.add_argument("--tag", default="", help="the variant's name; its rows join the proxy's leaderboard file")
    parser.add_argument("--quick", action="store_true", help="seconds-long sizes; nothing copied into the docs")
    args = parser.parse_args()
    variant = {k: v for k, v in (("mask_rule", args.mask_rule), ("merge_dropped", args.merge_dropped)) if v}
    if bool(variant) != bool(args.tag):
        parser.error("a variant (--mask-rule, --merge-dropped) needs a --tag, and a --tag a variant")
    summary = run_leaderboard(
        args.proxy, args.out, tuple(args.seeds), tuple(args.methods), args.quick, args.data_dir,
        limits=args.limits, variant=variant, tag=args.tag,
    )  # fmt: skip
    if args.quick:
        return
    summary = portable(summary, Path(args.out), " ".join(sys.argv[1:]))
    board_file = DOCS / "results" / f"leaderboard-{args.proxy}.json"
    if args.tag:
        label = variant_label(variant)
        summary = add_variant(json.loads(board_file.read_text()), summary, args.tag, label)
    atomic_write_text(board_file, json.dumps(summary, indent=2))
    with tempfile.TemporaryDirectory() as tmp:  # the plots of the whole board, variants included
        save_tradeoff_plots(summary, tmp)
        for plot in ("acc_vs_gmacs.png", "acc_vs_img_per_s.png"):
            shutil.copy(Path(tmp) / plot, DOCS / "leaderboards" / f"{args.proxy}-{plot}")


if __name__ == "__main__":
    main()
