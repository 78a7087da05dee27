"""Command line: ``dynamicvit {demo,train,compare,eval,calibrate,models,flops,tune,bench,viz,export} ...``
(also ``python -m dynamicvit``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dynamicvit.cli.commands import COMMANDS
from dynamicvit.cli.config_args import add_config_args, config_from_args
from dynamicvit.cli.parser import build_parser
from dynamicvit.core.files import CheckpointError
from dynamicvit.train.trainer import TrainingError

__all__ = ["add_config_args", "build_parser", "config_from_args", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a known kind of error is one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (ValueError, TypeError, CheckpointError, FileNotFoundError, TrainingError, ImportError) as err:
        print(f"dynamicvit {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0
