"""``dynamicvit bench``: measured img/s, latency and memory of dense against sparse models, of two trained
checkpoints, or of a training step."""

from __future__ import annotations

import argparse

from dynamicvit.cli.output import check_save, per_image_lines, printed_json, save_result, size_kwargs

__all__ = ["cmd_bench"]


def cmd_bench(args: argparse.Namespace) -> None:
    check_save(args)
    bench = _bench_training if args.training else _bench_checkpoints if args.checkpoints else _bench_models
    save_result(args, {"runs": bench(args)})


def _bench_training(args: argparse.Namespace) -> list[dict]:
    from dynamicvit.tools.bench import benchmark_training

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
    from dynamicvit.tools.bench import benchmark_checkpoints

    r = benchmark_checkpoints(*args.checkpoints, args.batch_sizes[0], args.warmup, args.repeats, args.device)
    if printed_json(args, [r]):
        return [r]
    print(f"batch {r['batch_size']}, {r['img_size'][0]}x{r['img_size'][1]}, median of {r['repeats']} interleaved runs")
    for name, ips in r["img_per_s"].items():
        ratio = ips / r["img_per_s"]["dense backbone" if "backbone" in name else "dense"]
        print(f"  {name:<16} {ips:9.1f} img/s  {ratio:5.2f}x  {r['gmacs'][name]:.5f} GMACs")
    return [r]


def _bench_models(args: argparse.Namespace) -> list[dict]:
    from dynamicvit.tools.bench import benchmark

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
    shown = ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in r["knob"].items())
    return shown if r["method"] == "dynamicvit" else f"{r['method']}, {shown}"


def _bench_notes(r: dict) -> str:
    """The noise warning, the adaptive mode's and the slicing limit's lines of one benchmark result."""
    noisy = [name for name, v in r["variants"].items() if v.get("noisy")]
    lines = (
        [
            f"  warning: p90 above 1.5x p50 for {', '.join(noisy)}: the timings are noise-bound (another process "
            "competed for the cores); rerun with more --repeats on an idle machine"
        ]
        if noisy
        else []
    )
    if r["adaptive_fraction_of_fixed"] is not None:
        padded = r["padded_fraction_of_fixed"]
        lines.append(
            f"  adaptive (calibrated to the fixed counts, packed): {r['adaptive_fraction_of_fixed']:.3f} of fixed"
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
