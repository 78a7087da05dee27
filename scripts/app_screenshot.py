"""Take the documentation's picture of the app (``docs/images/app.png``) with a trained model, as a user sees it:

    python scripts/app_screenshot.py runs/demo/sparse/last.pth docs/images/app.png

Serves ``dynamicvit app --checkpoint CHECKPOINT`` in this process, opens it in headless Chromium
(:mod:`dynamicvit.frontend.browser`), gives it the first of the example pictures the page offers for that model
(a test canvas, for a model trained on Cluttered Fashion-MNIST) and saves the page once it has answered with
the kept tokens, the top classes and the cost. Writes ``OUT.json`` beside the picture: the command, commit,
machine and date, and what the page showed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

from dynamicvit.core.files import atomic_write_text
from dynamicvit.core.provenance import provenance
from dynamicvit.frontend.app import _examples, build_app
from dynamicvit.frontend.browser import Page, launch
from dynamicvit.weights.checkpoint import read_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a training checkpoint (the demo's student: OUT/sparse/last.pth)")
    parser.add_argument("out", type=Path, help="the picture (PNG)")
    args = parser.parse_args()
    if not args.checkpoint.is_file():
        parser.error(f"{args.checkpoint}: no such file")
    config = read_checkpoint(args.checkpoint).get("config") or {}
    app = build_app(default_checkpoint=str(args.checkpoint))
    try:
        with tempfile.TemporaryDirectory() as folder, Page(launch(app)) as page:
            picture = _examples(Path(folder), config)[0]
            page.upload(picture)
            page.until(lambda: page.kept() and page.picture() and page.settled())
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(str(args.out))
            shown = page.info()
    finally:
        app.close()
    command = shlex.join(["python", "scripts/app_screenshot.py", *sys.argv[1:]])
    record = {"checkpoint": str(args.checkpoint), "picture": Path(picture).name, "page": shown}
    record["provenance"] = provenance(command)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(record, indent=2))
    print(args.out)


if __name__ == "__main__":
    main()
