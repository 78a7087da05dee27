"""The command line explains itself: every flag has help, shows its default, and ``train --help`` groups its
flags by what they are about."""

import argparse

from dynamicvit.cli.parser import DefaultsFormatter, build_parser
from dynamicvit.config import SECTIONS, RunConfig, config_fields, field_key


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _flags(p: argparse.ArgumentParser):
    return [a for a in p._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def test_every_flag_has_help():
    missing = [f"{name} {a.option_strings[0]}" for name, p in _commands().items() for a in _flags(p) if not a.help]
    assert not missing, f"flags without help: {missing}"


def test_every_default_worth_showing_is_shown():
    """A flag whose default is a value (not unset, a switch or empty) names it in --help; config flags (which
    default to "not given") name the config field's default."""
    fields = {field_key(f): f for _, f in config_fields()}
    for name, p in _commands().items():
        text = p.format_help()
        for a in _flags(p):
            from_config = a.dest in fields and a.help.startswith(fields[a.dest].metadata["help"])
            shown = fields[a.dest].default if from_config and a.default is None else a.default
            if (
                shown is None
                or isinstance(shown, bool)
                or shown == ""
                or not isinstance(shown, (int, float, str, list))
            ):
                continue
            named = f"(default: {shown})" in " ".join(text.split()) or "(default" in a.help
            assert named, f"{name} {a.option_strings[0]}: default {shown} not shown"


def test_train_help_groups_its_flags_by_config_section():
    train = _commands()["train"]
    titles = [g.title for g in train._action_groups]
    assert set(SECTIONS) <= set(titles)
    every = set(RunConfig().to_dict())
    assert sorted(n for names in SECTIONS.values() for n in names) == sorted(every)  # each field in one section
    grouped = {a.dest: g.title for g in train._action_groups for a in g._group_actions}
    assert grouped["keep_rate"] == "budget" and grouped["lr"] == "schedule" and grouped["canvas"] == "data"
    assert isinstance(train.formatter_class("x"), DefaultsFormatter) and "examples:" in train.format_help()


def test_examples_on_the_commands_that_need_them():
    commands = _commands()
    for name in ("train", "compare", "bench"):
        assert f"dynamicvit {name} " in commands[name].format_help().split("examples:")[1]


def test_a_command_is_one_declaration(capsys):
    """A toy command registered in one place is in the top-level help, parses with its own flag's help and
    default, and runs."""
    from dynamicvit.cli import main
    from dynamicvit.cli.registry import COMMANDS, Command, register_command

    ran = []
    register_command(
        Command(
            "toy",
            arguments=lambda p: p.add_argument("--size", type=int, default=3, help="how big"),
            run=lambda args: ran.append(args.size),
            help="a toy command",
        )
    )
    try:
        assert "a toy command" in build_parser().format_help()
        assert "how big (default: 3)" in _commands()["toy"].format_help()
        assert main(["toy", "--size", "5"]) == 0 and ran == [5]
    finally:
        COMMANDS.remove("toy")


def test_inference_commands_load_nothing_of_the_trainer():
    """``import dynamicvit`` and the ``--help`` of eval and app import nothing from ``dynamicvit.train``."""
    import subprocess
    import sys

    code = (
        "import sys, dynamicvit\n"
        "from dynamicvit.cli import main\n"
        "for c in ('eval', 'app', 'export'):\n"
        "    main([c, '--help'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('dynamicvit.train')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
