"""Declaring an option once: a dataclass field carrying its command-line help (and optional flags, choices,
flat key and valid range), so the run configuration, the command line's flags and ``--help`` and the checks
before any work are all generated from the one declaration. The run configuration's sections and each data
set's own options (:mod:`dynamicvit.data.registry`) are declared with it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

__all__ = ["option"]


def option(
    default: Any,
    help: str,
    *,
    valid: tuple[Callable[[Any], bool], str] | None = None,
    before: Any = dataclasses.MISSING,
    **cli,
) -> dataclasses.Field:
    """A dataclass field with its help text.

    Args:
        default: the default value (a dict default becomes a fresh dict per instance).
        help: one line for ``--help``.
        valid: ``(test, what it must be)``: a value failing ``test`` is refused before any work with
            ``--flag must be WHAT, got VALUE``.
        before: what a saved config without the field means (a checkpoint written before the field existed, or
            with no config, as the release's: the paper's behaviour), for fields whose default may differ.
        **cli: ``flags`` (the command line's, else ``--name-with-dashes``), ``choices``, ``key`` (its name in
            flat configs when that differs from the field's).

    Returns:
        The field, for a dataclass body (``canvas: int = option(64, "canvas side")``).
    """
    metadata = {"help": help, **cli} | ({"valid": valid} if valid else {})
    metadata |= {} if before is dataclasses.MISSING else {"before": before}
    if isinstance(default, dict):
        return dataclasses.field(default_factory=dict, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)
