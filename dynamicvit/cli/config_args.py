"""Command-line flags from :class:`~dynamicvit.config.RunConfig`'s fields (one definition of each
flag: its help, type and choices live on the field)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence

from dynamicvit.config import SECTIONS, RunConfig, config_fields, field_flags, field_key, field_kind, read_recipe

__all__ = ["DATA_FIELDS", "add_config_args", "config_from_args"]

DATA_FIELDS = SECTIONS["data"]  # which images: the flags of every command that reads a data set
_PARSERS = {"int": int, "float": float, "str": str, "list[int]": int, "list[float]": float, "dict": json.loads}


def add_config_args(p: argparse.ArgumentParser, names: Sequence[str] | None = None, skip: Sequence[str] = ()) -> None:
    """One flag per :class:`RunConfig` field (or the ``names`` among them), help text from the field and
    the field's default shown; with every field, in one argument group per config section.

    Every flag defaults to ``None`` – "not given" – so a config (the defaults, or a checkpoint's
    saved one) is overridden only by what the user passed."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for section, f in config_fields():
        key = field_key(f)
        if (names is not None and key not in names) or key in skip:
            continue
        meta = f.metadata
        target = (
            p if names is not None else groups.get(section) or groups.setdefault(section, p.add_argument_group(section))
        )
        kwargs = {"dest": key, "default": None, "help": _with_default(meta["help"], f)}
        kind = field_kind(f)
        if kind == "bool":
            kwargs["action"] = "store_false" if f.default else "store_true"
        else:
            kwargs["type"] = _PARSERS[kind]
            kwargs["nargs"] = "+" if kind.startswith("list") else None
            kwargs["choices"] = meta.get("choices")
        target.add_argument(*field_flags(f), **kwargs)


def _with_default(text: str, f: dataclasses.Field) -> str:
    """A field's help with its default, unless the default says nothing (unset, a switch, empty) or the
    text already names it."""
    default = f.default if f.default is not dataclasses.MISSING else None
    if default is None or isinstance(default, bool) or default == "" or "(default" in text:
        return text
    return f"{text} (default: {default})"


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The defaults, the recipe of ``--config FILE`` (if the command takes one) on top, and every config flag
    the user gave on top of both."""
    given = {key: getattr(args, key, None) for key in RunConfig().to_dict()}
    recipe = read_recipe(args.config) if getattr(args, "config", None) else {}
    return RunConfig.from_dict({**recipe, **{k: v for k, v in given.items() if v is not None}})
