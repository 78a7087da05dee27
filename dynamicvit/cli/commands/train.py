"""``dynamicvit train``: distillation fine-tuning of a sparse model (or --dense training)."""

from __future__ import annotations

import argparse
import json
import os

from dynamicvit.cli.config_args import add_config_args, config_from_args
from dynamicvit.cli.registry import Command, register_command

TRAIN_EXAMPLES = """examples:
  # a dense teacher, then its sparse student (the demo's data, 2 CPU cores: minutes)
  dynamicvit train --dense --model dvit_tiny_fmnist --data cluttered-fashion-mnist --canvas 48 --out runs/teacher
  dynamicvit train --model dvit_tiny_fmnist --data cluttered-fashion-mnist --canvas 48 \\
      --teacher-checkpoint runs/teacher/last.pth --keep-rate 0.7 --out runs/sparse
  # the paper's DeiT-S recipe (ImageNet folders; torchrun for several GPUs)
  dynamicvit train --config recipes/deit_small.yaml --data-dir /data/imagenet --out runs/deit_s
  dynamicvit train --config recipes/deit_small.yaml --dry-run   # check and print the configuration
"""


def arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``dynamicvit train``."""
    p.add_argument(
        "--config",
        default=None,
        help="a YAML recipe of config fields (e.g. recipes/deit_small.yaml); flags override it",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="check the configuration, print it as YAML and exit (reads no data)"
    )
    add_config_args(p)


def run(args: argparse.Namespace) -> None:
    """Run ``dynamicvit train`` on its parsed arguments."""
    from dynamicvit.train.trainer import train

    cfg = config_from_args(args)
    if args.dry_run:
        from dynamicvit.config import config_yaml
        from dynamicvit.train.build import resolve_config

        print(config_yaml(resolve_config(cfg)), end="")
        return
    record = train(cfg)
    if record and os.environ.get("RANK", "0") == "0":
        print(json.dumps(record, indent=2))


register_command(
    Command(
        "train",
        arguments=arguments,
        run=run,
        help="distillation fine-tuning of a sparse model (or --dense training)",
        description="Distillation fine-tuning of a sparse model from its dense teacher, or --dense training.",
        epilog=TRAIN_EXAMPLES,
    )
)
