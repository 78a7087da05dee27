"""What the commands' arguments share: number and JSON types whose errors are one line, the model arguments
several commands take, and the parser classes (defaults shown in ``--help``, one-line errors)."""

from __future__ import annotations

import argparse
import json

from dynamicvit.core.keep import DEFAULT_KEEP_MODE, untrained_rules
from dynamicvit.methods.registry import METHODS


def number(kind: type, test, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    return parse


positive = number(int, lambda v: v >= 1, "at least 1")


non_negative = number(int, lambda v: v >= 0, "0 or more")


positive_float = number(float, lambda v: v > 0, "positive")


port = number(int, lambda v: 1 <= v <= 65535, "a port in 1..65535")


non_negative_float = number(float, lambda v: v >= 0, "0 or more")


rate = number(float, lambda v: 0 < v <= 1, "in (0, 1]")


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not JSON: {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object: {text!r}")
    return value


def add_model_kwargs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-kwargs", type=json_object, default=None, help="JSON object of timm.create_model arguments")


def add_method_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--method",
        default="dynamicvit",
        choices=list(METHODS),
        help="how the model is reduced; a method whose knob is not the keep rate (ToMe's, MCTF's r) is tuned to "
        "DynamicViT's MACs at --keep-rate",
    )


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="timm or zoo model name, e.g. deit_small_patch16_224")
    add_method_arg(p)
    p.add_argument("--keep-rate", type=rate, default=None, help="keep ratio rho in (0, 1] (default: zoo's, else 0.7)")
    p.add_argument("--img-size", type=positive, default=None, help="input resolution (default: the model's)")
    p.add_argument(
        "--keep-mode", choices=untrained_rules(), default=DEFAULT_KEEP_MODE, help="per-image modes are calibrated"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


class DefaultsFormatter(argparse.RawDescriptionHelpFormatter):
    """Help with every flag's default shown (unless it says nothing: unset, off, empty or already in the text),
    and epilogs printed as written (the examples)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default in ("", argparse.SUPPRESS)
        if "(default" in text or unset or not action.option_strings:  # a default of 0 is shown (0 == False)
            return text
        return f"{text} (default: %(default)s)"


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``dynamicvit bench: error: argument --repeats: ...``)
    and exit status 2, like the commands' own errors; ``--help`` shows the usage, defaults and examples."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
