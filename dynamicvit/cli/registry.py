"""The commands of ``dynamicvit``: one :class:`Command` record each (name, help, arguments, run), registered by
its module under :mod:`dynamicvit.cli.commands`; the parser, the top-level help and the docs' CLI reference
are built from :data:`COMMANDS`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from dynamicvit.core.registry import Registry

__all__ = ["COMMANDS", "Command", "register_command"]


@dataclass(frozen=True)
class Command:
    """One sub-command.

    Attributes:
        name: its name on the command line.
        arguments: adds its arguments to its parser.
        run: runs it on the parsed arguments (its heavy imports inside, so that ``--help`` stays light).
        help: one line in the top-level help.
        description: the first paragraph of its own ``--help`` (default: ``help``).
        epilog: examples after its arguments.
    """

    name: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None]
    help: str
    description: str | None = None
    epilog: str | None = None


COMMANDS: Registry[Command] = Registry("command")


def register_command(command: Command) -> Command:
    """Add ``command`` to :data:`COMMANDS` (its position there is its place in the help)."""
    return COMMANDS.register(command.name, command)
