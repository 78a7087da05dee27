"""``dynamicvit tune``: the keep rate that reaches a measured speed-up or time per batch on this machine."""

from __future__ import annotations

import argparse
import json

from dynamicvit.cli.arguments import (
    non_negative,
    positive,
    positive_float,
    rate,
)
from dynamicvit.cli.output import check_save, save_result
from dynamicvit.cli.registry import Command, register_command


def arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``dynamicvit tune``."""
    p.add_argument("--model", required=True, help="timm or zoo model name")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-speedup", type=positive_float, help="img/s over the dense model's, e.g. 1.5")
    target.add_argument("--target-ms", type=positive_float, help="milliseconds per batch")
    p.add_argument("--batch-size", type=positive, default=32, help="images per timed call")
    p.add_argument("--img-size", type=positive, default=None, help="input resolution (default: the model's)")
    p.add_argument("--rates", type=rate, nargs="+", default=None, help="keep rates to try (default 0.9 ... 0.3)")
    p.add_argument("--warmup", type=non_negative, default=2, help="untimed calls first")
    p.add_argument("--repeats", type=positive, default=5, help="timed calls per keep rate")
    p.add_argument("--save", metavar="FILE", default=None, help="also write the results with their provenance as JSON")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> None:
    """Run ``dynamicvit tune`` on its parsed arguments."""
    from dynamicvit.bench.tune import tune

    check_save(args)
    r = tune(
        args.model,
        target_speedup=args.target_speedup,
        target_ms=args.target_ms,
        batch_size=args.batch_size,
        img_size=args.img_size,
        rates=tuple(args.rates) if args.rates else None,
        warmup=args.warmup,
        repeats=args.repeats,
    )
    save_result(args, r)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    print(
        f"{r['model']}, batch {r['batch_size']}, {r['threads']} threads: dense {r['dense_ms_per_batch']:.0f} ms/batch"
    )
    print("  keep rate   GMACs    img/s  speed-up  ms/batch")
    for p in r["curve"]:
        rate, gmacs, ips, ms = p["keep_rate"], p["gmacs"], p["img_per_s"], p["ms_per_batch"]
        print(f"  {rate:9.2f} {gmacs:7.3f} {ips:8.1f} {p['speedup']:8.2f}x {ms:9.0f}")
    print(
        f"keep rate {r['keep_rate']}: {r['gmacs']:.3f} GMACs (dense {r['dense_gmacs']:.3f}), measured "
        f"{r['speedup']:.2f}x dense, {r['ms_per_batch']:.0f} ms per batch"
    )


register_command(
    Command(
        "tune",
        arguments=arguments,
        run=run,
        help="the keep rate that reaches a measured speed-up or time per batch on this machine",
    )
)
