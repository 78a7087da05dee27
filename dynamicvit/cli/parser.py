"""The command line's argument parser, built from the registered commands (:data:`~dynamicvit.cli.registry.
COMMANDS`): each adds its own arguments."""

from __future__ import annotations

import argparse

from dynamicvit.cli.arguments import DefaultsFormatter, OneLineParser
from dynamicvit.cli.commands import COMMANDS

__all__ = ["DefaultsFormatter", "build_parser"]

DESCRIPTION = "dynamicvit: dynamic spatial sparsification for timm vision models (also python -m dynamicvit)."


def build_parser() -> argparse.ArgumentParser:
    """The ``dynamicvit`` parser; ``args.command`` names the sub-command given."""
    parser = OneLineParser(prog="dynamicvit", description=DESCRIPTION)
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (also DYNAMICVIT_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        p = sub.add_parser(command.name, help=command.help, description=command.description, epilog=command.epilog)
        command.arguments(p)
    return parser
