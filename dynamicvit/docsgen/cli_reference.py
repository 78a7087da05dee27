"""The command-line reference of the documentation, made from the argument parser (never a typed copy)."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator

from dynamicvit.cli.parser import build_parser

__all__ = ["cli_reference"]


@contextlib.contextmanager
def _columns(width: int) -> Iterator[None]:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def cli_reference() -> str:
    """Every command's ``--help``, from the parser itself (markdown, one section per command)."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    with _columns(100):
        sections = [f"```text\n{parser.format_help()}```"]
        for name, sub in commands.choices.items():
            sections.append(f"## `dynamicvit {name}`\n\n```text\n{sub.format_help()}```")
    return "\n\n".join(sections)
