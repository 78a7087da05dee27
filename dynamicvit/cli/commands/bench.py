"""``dynamicvit bench``: measured img/s, latency and memory of dense vs sparse (and the slicing limit)."""

from __future__ import annotations

import argparse

from dynamicvit.cli.arguments import (
    add_method_arg,
    non_negative,
    positive,
    rate,
)
from dynamicvit.cli.output import check_save, knob_text, per_image_lines, printed_json, save_result, size_kwargs
from dynamicvit.cli.registry import Command, register_command
from dynamicvit.core.keep import DEFAULT_KEEP_MODE, untrained_rules

BENCH_EXAMPLES = """examples:
  dynamicvit bench --model deit_small_patch16_224 --keep-rate 0.7 --batch-size 1 32   # img/s, dense vs sparse
  dynamicvit bench --model dynamicvit_deit_s.r0_7 --onnx --save bench.json          # with onnxruntime
  dynamicvit bench --checkpoints runs/teacher/last.pth runs/sparse/last.pth         # two trained models
"""


def arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``dynamicvit bench``."""
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", "--models", dest="models", nargs="+", help="timm or zoo model name(s)")
    which.add_argument(
        "--checkpoints",
        nargs=2,
        metavar=("DENSE", "SPARSE"),
        help="two trained models (classifiers, segmenters, detectors): img/s of both and of their backbones",
    )
    add_method_arg(p)
    p.add_argument("--keep-rate", type=rate, default=None, help="keep ratio rho in (0, 1] (default: zoo's, else 0.7)")
    p.add_argument("--img-size", type=positive, default=None, help="input resolution (default: the model's)")
    p.add_argument(
        "--batch-size",
        "--batch-sizes",
        dest="batch_sizes",
        type=positive,
        nargs="+",
        default=[32],
        help="batch sizes to time",
    )
    p.add_argument("--warmup", type=non_negative, default=3, help="untimed calls first")
    p.add_argument("--repeats", type=positive, default=10, help="timed calls per model, interleaved")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd dense and sparse")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: the GPU when there is one)")
    p.add_argument("--save", metavar="FILE", default=None, help="also write the results with their provenance as JSON")
    p.add_argument("--onnx", action="store_true", help="also time the ONNX exports with onnxruntime")
    p.add_argument(
        "--keep-mode",
        choices=untrained_rules(),
        default=DEFAULT_KEEP_MODE,
        help="a per-image mode: also time every per-image mode, calibrated to the fixed mode's counts",
    )
    p.add_argument(
        "--training",
        action="store_true",
        help="time and memory of a training step: dense, fine-tune (also with a frozen prefix), calibrate",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> None:
    """Run ``dynamicvit bench`` on its parsed arguments."""
    check_save(args)
    bench = _bench_training if args.training else _bench_checkpoints if args.checkpoints else _bench_models
    save_result(args, {"runs": bench(args)})


def _bench_training(args: argparse.Namespace) -> list[dict]:
    from dynamicvit.bench.throughput import benchmark_training

    runs = [
        benchmark_training(
            m, args.keep_rate or 0.7, b, args.warmup, args.repeats, args.device, **size_kwargs(args.img_size)
        )
        for m in args.models
        for b in args.batch_sizes
    ]
    if printed_json(args, runs):
        return runs
    for r in runs:
        print(f"{r['model']} training step, batch {r['batch_size']}, median of {r['repeats']} interleaved runs")
        for name, secs in r["seconds"].items():
            print(
                f"  {name:<30} {secs:7.3f} s  {r['time_vs_dense'][name]:5.2f}x   "
                f"{r['peak_mb'][name]:8.1f} MB  {r['memory_vs_dense'][name]:5.2f}x"
            )
    return runs


def _bench_checkpoints(args: argparse.Namespace) -> list[dict]:
    from dynamicvit.bench.throughput import benchmark_checkpoints

    r = benchmark_checkpoints(*args.checkpoints, args.batch_sizes[0], args.warmup, args.repeats, args.device)
    if printed_json(args, [r]):
        return [r]
    print(f"batch {r['batch_size']}, {r['img_size'][0]}x{r['img_size'][1]}, median of {r['repeats']} interleaved runs")
    for name, ips in r["img_per_s"].items():
        ratio = ips / r["img_per_s"]["dense backbone" if "backbone" in name else "dense"]
        print(f"  {name:<16} {ips:9.1f} img/s  {ratio:5.2f}x  {r['gmacs'][name]:.5f} GMACs")
    return [r]


def _bench_models(args: argparse.Namespace) -> list[dict]:
    from dynamicvit.bench.throughput import benchmark

    keys = ("method", "keep_rate", "img_size", "warmup", "repeats", "compile", "onnx", "device")
    options = {k: getattr(args, k) for k in keys}
    results = [
        benchmark(model, batch_size=batch, keep_mode=args.keep_mode, **options)
        for model in args.models
        for batch in args.batch_sizes
    ]
    if printed_json(args, results):
        return results
    for r in results:
        print(
            f"{r['model']} {_knob(r)}, batch {r['batch_size']}, {r['device']} "
            f"({r['threads']} threads), median of {r['repeats']} interleaved runs"
        )
        print(f"  {'variant':<17}{'img/s':>9}{'× dense':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'peak MB':>9}")
        for name, v in r["variants"].items():
            lat, peak = v["latency_ms"], v["peak_mb"]
            print(
                f"  {name:<17}{v['img_per_s']:>9.1f}{v['speedup']:>9.2f}{lat['p50']:>9.1f}{lat['p90']:>9.1f}"
                f"{lat['p99']:>9.1f}{'–' if peak is None else f'{peak:.1f}':>9}"
            )
        notes = _bench_notes(r)
        if notes:
            print(notes)
    return results


def _knob(r: dict) -> str:
    """``keep rate 0.7`` for DynamicViT; ``tome, r 5.2`` for a method with another knob."""
    shown = knob_text(r["knob"])
    return shown if r["method"] == "dynamicvit" else f"{r['method']}, {shown}"


def _bench_notes(r: dict) -> str:
    """The noise warning, the threshold mode's and the slicing limit's lines of one benchmark result."""
    noisy = [name for name, v in r["variants"].items() if v.get("noisy")]
    lines = (
        [
            f"  warning: p90 above 1.5x p50 for {', '.join(noisy)}: the timings are noise-bound (another process "
            "competed for the cores); rerun with more --repeats on an idle machine"
        ]
        if noisy
        else []
    )
    if r.get("threshold_fraction_of_fixed") is not None:
        padded = r["padded_fraction_of_fixed"]
        lines.append(
            f"  threshold (calibrated to the fixed counts, packed): {r['threshold_fraction_of_fixed']:.3f} of fixed"
            + ("" if padded is None else f"; padded instead of packed: {padded:.3f}")
        )
        lines.append(per_image_lines(r["per_image"]))
    if r["fraction_of_limit"] is not None:
        lines.append(
            f"  limit = same token counts sliced, no predictor; sparse: {r['fraction_of_limit']:.3f} of it, "
            f"limit+predictors (scores computed, tokens sliced): {r['predictors_fraction_of_limit']:.3f}"
        )
    if r.get("merged_fraction_of_fixed") is not None:
        lines.append(f"  merged drops (same kept counts): {r['merged_fraction_of_fixed']:.3f} of sparse's img/s")
    return "\n".join(lines)


register_command(
    Command(
        "bench",
        arguments=arguments,
        run=run,
        help="measured img/s, latency and memory of dense vs sparse (and the slicing limit)",
        description="Measured img/s, latency and memory of dense vs sparse, timed interleaved in one process.",
        epilog=BENCH_EXAMPLES,
    )
)
