"""``dynamicvit app``: a local web page: upload images, move the keep rate, see the kept tokens."""

from __future__ import annotations

import argparse
from pathlib import Path

from dynamicvit.cli.arguments import port, positive, positive_float
from dynamicvit.cli.registry import Command, register_command


def arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``dynamicvit app``."""
    p.add_argument(
        "--model",
        default=None,
        help="timm or zoo name the page starts with (default: the training checkpoint's own model, else "
        "deit_small_patch16_224)",
    )
    p.add_argument("--checkpoint", default="", help="a training checkpoint (or a release file with --model)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: this machine only)")
    p.add_argument("--port", type=port, default=7860, help="port to serve on")
    p.add_argument(
        "--queue", type=positive, default=8, help="requests that may wait behind the running one (more: 'queue full')"
    )
    p.add_argument(
        "--time-limit", type=positive_float, default=60.0, metavar="SECONDS",
        help="a request without its answer after this long is told the page is busy",
    )  # fmt: skip


def run(args: argparse.Namespace) -> None:
    """Run ``dynamicvit app`` on its parsed arguments."""
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f"no checkpoint file at {args.checkpoint}")
    from dynamicvit.frontend.app import launch

    launch(args.model, args.checkpoint, args.host, args.port, args.queue, args.time_limit)


register_command(
    Command(
        "app",
        arguments=arguments,
        run=run,
        help="a local web page: upload images, move the keep rate, see the kept tokens",
    )
)
