"""Command line: ``dynamicvit COMMAND ...`` (also ``python -m dynamicvit``), one registered command per module
of :mod:`dynamicvit.cli.commands` (``dynamicvit --help`` lists them)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from dynamicvit.cli.config_args import add_config_args, config_from_args
from dynamicvit.cli.parser import build_parser
from dynamicvit.cli.registry import COMMANDS
from dynamicvit.core.errors import CheckpointError, TrainingError, WriteError

__all__ = ["add_config_args", "build_parser", "config_from_args", "main"]


# what a user's input or files can cause: one line naming it, exit status 2
USER_ERRORS = (ValueError, TypeError, CheckpointError, OSError, TrainingError, ImportError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. A user error (bad argument or file) is one line on stderr and exit status 2, any
    other error one line with a hint and status 1; ``--debug`` (or ``DYNAMICVIT_DEBUG=1``) shows the
    traceback instead."""
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # the command line, for result files
    except SystemExit as stop:  # --help (0) or a bad argument (2, one line already printed)
        return int(stop.code or 0)
    debug = args.debug or os.environ.get("DYNAMICVIT_DEBUG", "") not in ("", "0")
    try:
        COMMANDS[args.command].run(args)
    except KeyboardInterrupt:
        print(f"dynamicvit {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if debug:
            raise
        if isinstance(err, USER_ERRORS + (WriteError,)):
            print(f"dynamicvit {args.command}: error: {err}", file=sys.stderr)
            return 1 if isinstance(err, WriteError) else 2
        print(
            f"dynamicvit {args.command}: internal error: {type(err).__name__}: {err} "
            "(run with --debug or DYNAMICVIT_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0
