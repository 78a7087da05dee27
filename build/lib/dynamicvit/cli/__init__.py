"""Command line: ``dynamicvit {demo,train,compare,eval,calibrate,models,flops,tune,bench,viz,export} ...``
(also ``python -m dynamicvit``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dynamicvit.cli.config_args import add_config_args, config_from_args
from dynamicvit.cli.parser import build_parser
from dynamicvit.train.trainer import TrainingError
from dynamicvit.weights.checkpoint import CheckpointError

__all__ = ["add_config_args", "build_parser", "config_from_args", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a known kind of error is one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, TypeError, CheckpointError, FileNotFoundError, TrainingError, ImportError) as err:
        print(f"dynamicvit {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0
