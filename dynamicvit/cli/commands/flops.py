"""``dynamicvit flops``: multiply-accumulates of dense vs sparse, per stage."""

from __future__ import annotations

import argparse
import json

from dynamicvit.cli.arguments import (
    add_model_args,
)
from dynamicvit.cli.output import check_save, knob_text, per_image_lines, save_result
from dynamicvit.cli.registry import Command, register_command
from dynamicvit.core.keep import KEEP_RULES


def arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``dynamicvit flops``."""
    add_model_args(p)
    p.add_argument("--save", metavar="FILE", default=None, help="also write the result with its provenance as JSON")


def run(args: argparse.Namespace) -> None:
    """Run ``dynamicvit flops`` on its parsed arguments."""
    from dynamicvit.bench.flops_report import compare_flops

    check_save(args)
    r = compare_flops(
        args.model, method=args.method, keep_rate=args.keep_rate, img_size=args.img_size, keep_mode=args.keep_mode
    )
    save_result(args, r)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    dense, sparse = r["dense"], r["sparse"]
    h, w = r["img_size"]
    print(f"{r['model']} @ {h}x{w}, {r['method']} ({knob_text(r['knob'])}) — GMACs per image ({r['unit']})")
    print(f"{'part':<16}{'dense':>10}{'sparse':>10}")
    for part in sparse["parts"]:
        d = dense["parts"].get(part)
        print(f"{part:<16}{'' if d is None else f'{d / 1e9:.3f}':>10}{sparse['parts'][part] / 1e9:>10.3f}")
    print(f"{'total':<16}{dense['gmacs']:>10.3f}{sparse['gmacs']:>10.3f}   ratio {r['ratio']:.3f}")
    print("tokens kept: " + ", ".join(f"{k} {v}" for k, v in sparse["tokens"].items()))
    if KEEP_RULES[args.keep_mode].per_image:
        print(f"{args.keep_mode}, calibrated to the fixed budget on 32 random images (untrained predictors):")
        print(per_image_lines(r["per_image"]))


register_command(
    Command("flops", arguments=arguments, run=run, help="multiply-accumulates of dense vs sparse, per stage")
)
