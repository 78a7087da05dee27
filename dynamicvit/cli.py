"""Command line: ``dynamicvit {flops,bench} ...`` (also ``python -m dynamicvit``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .checkpoint import CheckpointError

__all__ = ["main"]


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="timm model name, e.g. deit_small_patch16_224")
    p.add_argument("--keep-rate", type=float, default=0.7, help="per-stage keep ratio rho in (0, 1]")
    p.add_argument("--img-size", type=int, default=None, help="input resolution (default: the model's)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _cmd_flops(args: argparse.Namespace) -> None:
    from .flops import compare_flops

    r = compare_flops(args.model, keep_rate=args.keep_rate, img_size=args.img_size)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    dense, sparse = r["dense"], r["sparse"]
    h, w = r["img_size"]
    print(f"{r['model']} @ {h}x{w}, keep rate {r['keep_rate']} — GMACs per image ({r['unit']})")
    print(f"{'part':<16}{'dense':>10}{'sparse':>10}")
    for part in sparse["parts"]:
        d = dense["parts"].get(part)
        print(f"{part:<16}{'' if d is None else f'{d / 1e9:.3f}':>10}{sparse['parts'][part] / 1e9:>10.3f}")
    print(f"{'total':<16}{dense['gmacs']:>10.3f}{sparse['gmacs']:>10.3f}   ratio {r['ratio']:.3f}")
    print("tokens kept: " + ", ".join(f"{k} {v}" for k, v in sparse["tokens"].items()))


def _cmd_bench(args: argparse.Namespace) -> None:
    from .bench import benchmark

    r = benchmark(
        args.model,
        keep_rate=args.keep_rate,
        batch_size=args.batch_size,
        img_size=args.img_size,
        warmup=args.warmup,
        repeats=args.repeats,
    )
    if args.json:
        print(json.dumps(r, indent=2))
        return
    ips = r["img_per_s"]
    print(
        f"{r['model']} keep rate {r['keep_rate']}, batch {r['batch_size']}, {r['threads']} threads, median of "
        f"{args.repeats} interleaved runs"
    )
    print(f"dense  {ips['dense']:9.1f} img/s")
    print(f"sparse {ips['sparse']:9.1f} img/s   {r['speedup']:.2f}x dense")
    print(
        f"limit  {ips['limit']:9.1f} img/s   {r['limit_speedup']:.2f}x dense (same token counts, sliced, no predictor)"
    )
    print(f"sparse reaches {r['fraction_of_limit']:.3f} of the limit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynamicvit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("flops", help="multiply-accumulates of dense vs sparse, per stage")
    _add_model_args(p)
    p.set_defaults(func=_cmd_flops)

    p = sub.add_parser("bench", help="measured img/s of dense vs sparse (and the slicing limit)")
    _add_model_args(p)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, TypeError, CheckpointError, FileNotFoundError) as err:
        print(f"dynamicvit {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0
