"""Take the pictures of the documentation site as a reader sees it: the home page and a leaderboard page.

    python scripts/site_screenshots.py docs/images

Builds the site (``mkdocs build --strict``) into a temporary folder, serves it on a local port, opens each page
in headless Chromium (:mod:`dynamicvit.frontend.browser`) and saves ``site-home.png`` and
``site-leaderboard-PROXY.png`` in the folder given, with ``site.json`` beside them: the command, commit,
machine and date, and each page's address and title. The pages show the result files as they are when it
runs, so run it after publishing a board.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from dynamicvit.core.files import atomic_write_text
from dynamicvit.core.provenance import provenance
from dynamicvit.frontend.browser import Browser

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"home": "", "leaderboard-demo": "leaderboards/demo/"}


def build_site(folder: Path) -> None:
    """The documentation built into ``folder`` (strict: a broken link or a failed block stops it)."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(folder)]
    subprocess.run(command, cwd=ROOT, env=env, check=True)


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A local HTTP server of ``folder`` in a background thread, and its address."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no line per request
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder of the pictures (docs/images)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    shown = {}
    with tempfile.TemporaryDirectory() as site:
        build_site(Path(site))
        server, address = serve(Path(site))
        try:
            for name, page in PAGES.items():
                with Browser(address + page, size=(1300, 1500)) as browser:
                    browser.element("article h1")  # the page has rendered
                    browser.screenshot(args.out / f"site-{name}.png")
                    shown[name] = {"page": page or "index", "title": browser.driver.title}
        finally:
            server.shutdown()
    command = shlex.join(["python", "scripts/site_screenshots.py", *sys.argv[1:]])
    record = {"pages": shown, "provenance": provenance(command)}
    atomic_write_text(args.out / "site.json", json.dumps(record, indent=2))
    print(", ".join(str(args.out / f"site-{name}.png") for name in PAGES))


if __name__ == "__main__":
    main()
