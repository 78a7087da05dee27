"""``dynamicvit models``: the release's pretrained sparse models (the zoo)."""

from __future__ import annotations

import argparse

from dynamicvit.cli.registry import Command, register_command
from dynamicvit.weights.zoo import ZOO


def arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``dynamicvit models``."""
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'dynamicvit_convnext*'")


def run(args: argparse.Namespace) -> None:
    """Run ``dynamicvit models`` on its parsed arguments."""
    from dynamicvit.weights.zoo import list_models

    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no zoo model matches {args.pattern!r}")
    print(f"{'name':<32}{'backbone':<31}{'rho':>5}{'top-1':>7}{'GMACs':>7}  url")
    for name in names:
        e = ZOO[name]
        print(f"{name:<32}{e.arch:<31}{e.keep_rate:>5}{e.top1:>7.2f}{e.paper_gmacs:>7.1f}  {e.url}")
    print("top-1 (ImageNet-1k) and GMACs as the release publishes them; dynamicvit.create_model(name, pretrained=True)")


register_command(
    Command("models", arguments=arguments, run=run, help="the release's pretrained sparse models (the zoo)")
)
