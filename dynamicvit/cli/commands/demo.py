"""``dynamicvit demo``: a dense teacher (shipped, or trained here) and a DynamicViT on Cluttered Fashion-MNIST;
report."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from dynamicvit.cli.arguments import non_negative, rate
from dynamicvit.cli.registry import Command, register_command
from dynamicvit.core.keep import MASK_NOISES


def arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``dynamicvit demo``."""
    p.add_argument("--out", default="runs/demo", help="report folder")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: the data set's own lookup)")
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run on a few hundred images")
    p.add_argument("--resume", action="store_true", help="reuse the finished runs of an earlier demo in --out")
    p.add_argument("--overwrite", action="store_true", help="start over in an --out that holds an earlier demo")
    p.add_argument("--seed", type=non_negative, default=0, help="the student's seed (the teacher is seed 0's)")
    p.add_argument(
        "--mask-rule",
        choices=("topk", "gumbel"),
        default="topk",
        help="the student's training masks: the top-k rule, or the paper's Gumbel-Softmax samples",
    )
    p.add_argument(
        "--predictor-width",
        type=rate,
        default=0.25,
        help="the student's predictor MLP width as a fraction of the model's (1: the paper's)",
    )
    p.add_argument(
        "--mask-noise",
        choices=MASK_NOISES,
        default="frozen",
        help="the top-k rule's Gumbel noise in every step, or only in the predictor-only first epoch (then the "
        "backbone trains on the tokens inference keeps)",
    )
    p.add_argument(
        "--train-teacher",
        action="store_true",
        help="train the dense teacher here (default: start from the one shipped with the package, when the demo's "
        "settings are those it was trained with)",
    )


def run(args: argparse.Namespace) -> None:
    """Run ``dynamicvit demo`` on its parsed arguments."""
    from dynamicvit.experiments.demo import DemoConfig, run_demo

    overrides = {
        "out_dir": args.out,
        "data_dir": args.data_dir,
        "resume": args.resume,
        "overwrite": args.overwrite,
        "train_teacher": args.train_teacher,
        "seed": args.seed,
        "mask_rule": args.mask_rule,
        "predictor_width": args.predictor_width,
        "mask_noise": args.mask_noise,
    }
    cfg = DemoConfig.quick(**overrides) if args.quick else DemoConfig(**overrides)
    summary = run_demo(cfg, command=shlex.join(["dynamicvit", *args.argv]))
    print((Path(args.out) / "report.md").read_text())
    print(f"report written to {args.out}/report.md ({summary['total_seconds']:.0f} s)")


register_command(
    Command(
        "demo",
        arguments=arguments,
        run=run,
        help="train a dense teacher and a DynamicViT on Cluttered Fashion-MNIST; report",
    )
)
