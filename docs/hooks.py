"""mkdocs hook: pages take generated content instead of typed copies.

* ``<!-- cli -->`` becomes the ``--help`` of every command, from the argument parser itself;
* ``<!-- methods -->`` becomes the table of token-reduction methods, from the method registry
  (``dynamicvit.docsgen.methods``);
* ``<!-- results:NAME -->`` becomes the table of ``docs/results/NAME.json`` with its provenance line
  (``dynamicvit.docsgen.tables.render``), so a number typed by hand cannot appear;
* ``<!-- layers -->`` becomes the diagram of which folder imports which, drawn from the code
  (``dynamicvit.docsgen.layers``);
* ``<!-- promises:SECTION -->`` becomes the promises the tests make under SECTION, each with the test that
  checks it (``dynamicvit.docsgen.promises``);
* the Sphinx roles of the package's docstrings (``:func:`x` ``, ``:class:`~a.B` ``) become code spans in the
  rendered API reference instead of printing literally (``dynamicvit.docsgen.roles``).
"""

from __future__ import annotations

import re
from pathlib import Path

import dynamicvit
from dynamicvit.docsgen.cli_reference import cli_reference
from dynamicvit.docsgen.layers import render_layers
from dynamicvit.docsgen.methods import methods_table
from dynamicvit.docsgen.promises import render_promises
from dynamicvit.docsgen.roles import strip_roles
from dynamicvit.docsgen.tables import render

_RESULTS = re.compile(r"<!-- results:([\w-]+) -->")
_PROMISES = re.compile(r"<!-- promises:([\w -]+) -->")
TESTS = Path(__file__).resolve().parent.parent / "tests"


def on_page_markdown(markdown: str, config, **_) -> str:
    results = Path(config["docs_dir"]) / "results"
    markdown = markdown.replace("<!-- cli -->", cli_reference())
    if "<!-- methods -->" in markdown:
        markdown = markdown.replace("<!-- methods -->", methods_table())
    if "<!-- layers -->" in markdown:
        markdown = markdown.replace("<!-- layers -->", render_layers(Path(dynamicvit.__file__).parent))
    markdown = _PROMISES.sub(lambda m: render_promises(m.group(1), TESTS), markdown)
    return _RESULTS.sub(lambda m: render(m.group(1), results), markdown)


def on_page_content(html: str, **_) -> str:
    return strip_roles(html)
