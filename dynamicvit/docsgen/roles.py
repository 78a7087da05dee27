"""Sphinx roles in rendered docstrings: the package's docstrings write ``:func:`name` `` (read by ``help()``
and IDEs), which mkdocstrings' Google-style parser leaves as text; the site shows the name as code."""

from __future__ import annotations

import re

__all__ = ["strip_roles"]

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const):<code>(~?)([^<]*)</code>")


def strip_roles(html: str) -> str:
    """``:role:<code>x</code>`` → ``<code>x</code>`` in rendered HTML; ``~a.b.C`` shows as ``C``, as Sphinx
    would, and a leading dot of a relative name is dropped.

    Args:
        html: a rendered page.

    Returns:
        The page without literal roles.
    """

    def code(match: re.Match) -> str:
        name = match.group(2).lstrip(".")
        return f"<code>{name.rsplit('.', 1)[-1] if match.group(1) else name}</code>"

    return _ROLE.sub(code, html)
