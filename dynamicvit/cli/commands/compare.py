"""``dynamicvit compare``: every token-reduction method at matched MACs: table and plots."""

from __future__ import annotations

import argparse
from pathlib import Path

from dynamicvit.cli.arguments import (
    positive,
    rate,
)
from dynamicvit.cli.config_args import add_config_args, config_from_args
from dynamicvit.cli.registry import Command, register_command
from dynamicvit.config.regimes import REGIMES
from dynamicvit.methods.registry import METHODS

COMPARE_EXAMPLES = """examples:
  # every method at three budgets, backbone frozen and fine-tuned, two seeds
  dynamicvit compare --model dvit_tiny_fmnist --model-kwargs '{"depth": 6}' --data cluttered-fashion-mnist \\
      --canvas 48 --img-size 48 --teacher-checkpoint runs/teacher/last.pth --epochs 1 \\
      --budgets 0.5 0.65 0.8 --regime frozen finetune --seeds 0 1 --out runs/compare
  # two methods only
  dynamicvit compare ... --methods dynamicvit tome
"""


def arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``dynamicvit compare``."""
    add_config_args(p, skip=("out_dir",))
    p.add_argument("--budgets", type=rate, nargs="+", default=[0.5, 0.6, 0.7, 0.8, 0.9], help="fractions of dense MACs")
    p.add_argument("--methods", nargs="+", default=None, help="subset of: " + " ".join(METHODS))
    p.add_argument(
        "--regime",
        dest="regimes",
        nargs="+",
        choices=REGIMES,
        default=None,
        help="frozen: only a method's own parameters learn; finetune: every method fine-tuned with the recipe "
        "(default: what the recipe's --freeze-backbone-epochs implies)",
    )
    p.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="training seeds of the trained rows (default: --seed)"
    )
    p.add_argument("--bench-batch", type=positive, default=64, help="images per timed call (batch 1 is timed too)")
    p.add_argument("--bench-repeats", type=positive, default=10, help="timed rounds per batch size")
    p.add_argument("--out", dest="out_dir", default="runs/compare", help="report folder")


def run(args: argparse.Namespace) -> None:
    """Run ``dynamicvit compare`` on its parsed arguments."""
    from dynamicvit.experiments.compare import run_compare

    cfg = config_from_args(args)
    run_compare(
        cfg,
        budgets=args.budgets,
        methods=args.methods or tuple(METHODS),
        out_dir=args.out_dir,
        bench_batch=args.bench_batch,
        bench_repeats=args.bench_repeats,
        seeds=args.seeds,
        regimes=args.regimes,
    )
    print((Path(args.out_dir) / "compare.md").read_text())


register_command(
    Command(
        "compare",
        arguments=arguments,
        run=run,
        help="every token-reduction method at matched MACs: table and plots",
        description="Every token-reduction method at matched MACs, trained rows over seeds: table, plots, leaders.",
        epilog=COMPARE_EXAMPLES,
    )
)
