"""One :class:`Registry` class behind every registry of the package (methods, backbone families, tasks, data
sets, keep rules, mask rules), as detectron2's ``Registry``: a name maps to an object, names keep their
registration order (the order of command-line choices and of family recognition), and a second object under
a taken name is an error that names both places."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """An ordered, read-only mapping of names to registered objects, filled by :meth:`register`.

    Args:
        kind: what the registry holds, in words (``"method"``, ``"keep rule"``), for error messages.

    Attributes:
        kind: as given.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._where: dict[str, str] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, obj: T) -> T:
        """Add ``obj`` under ``name`` and return it.

        Raises:
            ValueError: ``name`` is taken; the message names where each of the two was registered.
        """
        where = _caller()
        if name in self._items:
            raise ValueError(
                f"a {self.kind} called {name!r} is already registered (at {self._where[name]}); a second one at {where}"
            )
        self._items[name], self._where[name] = obj, where
        return obj

    def remove(self, name: str) -> T:
        """Take ``name`` out again (a test's temporary entry) and return its object."""
        self._where.pop(name)
        return self._items.pop(name)

    def add_alias(self, old: str, name: str) -> None:
        """Let the former name ``old`` of the entry ``name`` still be read (saved configs, scripts): it resolves
        to ``name`` with a ``FutureWarning``, and is never listed among the choices."""
        if name not in self._items or old in self._items:
            raise ValueError(f"cannot alias {old!r} to {name!r} in the {self.kind} registry")
        self._aliases[old] = name

    def canonical(self, name: str) -> str:
        """``name`` with a former name replaced by the current one (warning once per call site); any other
        string unchanged, for the caller's own check."""
        if name in self._aliases:
            new = self._aliases[name]
            warnings.warn(f"the {self.kind} {name!r} is now called {new!r}; the old name will go", FutureWarning, 3)
            return new
        return name

    def lookup(self, name: str) -> T:
        """The object registered as ``name`` (or a former name of it), or a one-line ``ValueError`` listing the
        choices."""
        try:
            return self._items[self.canonical(name)]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._items)}") from None

    def choices(self) -> tuple[str, ...]:
        """The registered names in registration order (argparse ``choices``)."""
        return tuple(self._items)

    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __contains__(self, name: object) -> bool:  # a former name is still a valid choice (argparse asks here)
        return name in self._items or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"


def _caller() -> str:
    """``file:line`` of the first frame outside the registry machinery (this module and ``register_*`` helpers)."""
    frame = sys._getframe(2)
    while frame.f_back is not None and (
        frame.f_code.co_name.startswith("register") or frame.f_code.co_filename == __file__
    ):
        frame = frame.f_back
    return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"
