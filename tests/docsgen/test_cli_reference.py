"""The command-line reference is generated from the parser: every command and every flag appears."""

import argparse

from dynamicvit.cli import build_parser
from dynamicvit.docsgen.cli_reference import cli_reference


def test_every_command_and_flag_is_in_the_reference():
    text = cli_reference()
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        assert f"## `dynamicvit {name}`" in text
        for action in sub._actions:
            for flag in action.option_strings:
                assert flag in text, (name, flag)
