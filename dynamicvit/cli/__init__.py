"""Command line: ``dynamicvit {demo,train,compare,eval,calibrate,models,flops,tune,bench,viz,export} ...``
(also ``python -m dynamicvit``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dynamicvit.core.interfaces import KEEP_MODES
from dynamicvit.methods import METHODS
from dynamicvit.train.config import TrainConfig, check_writable, field_flags
from dynamicvit.train.trainer import TrainingError
from dynamicvit.weights.checkpoint import CheckpointError
from dynamicvit.weights.zoo import ZOO, download

__all__ = ["main"]


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="timm or zoo model name, e.g. deit_small_patch16_224")
    p.add_argument("--keep-rate", type=float, default=None, help="keep ratio rho in (0, 1] (default: zoo's, else 0.7)")
    p.add_argument("--img-size", type=int, default=None, help="input resolution (default: the model's)")
    p.add_argument("--keep-mode", choices=KEEP_MODES, default="fixed", help="adaptive: per-image counts by threshold")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _cmd_flops(args: argparse.Namespace) -> None:
    from dynamicvit.core.flops import compare_flops

    r = compare_flops(args.model, keep_rate=args.keep_rate, img_size=args.img_size, keep_mode=args.keep_mode)
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
    if args.keep_mode == "adaptive":
        print("adaptive, calibrated to the fixed budget on 32 random images (untrained predictors):")
        print(_per_image_lines(r["per_image"]))


def _cmd_bench(args: argparse.Namespace) -> None:
    from dynamicvit.tools.bench import benchmark, benchmark_checkpoints

    if args.training:
        from dynamicvit.tools.bench import benchmark_training

        runs = [
            benchmark_training(m, args.keep_rate or 0.7, b, args.warmup, args.repeats, **_size(args.img_size))
            for m in args.models
            for b in args.batch_sizes
        ]
        if _printed_json(args, runs):
            return
        for r in runs:
            print(f"{r['model']} training step, batch {r['batch_size']}, median of {r['repeats']} interleaved runs")
            for name, secs in r["seconds"].items():
                print(
                    f"  {name:<24} {secs:7.3f} s  {r['time_vs_dense'][name]:5.2f}x   "
                    f"{r['peak_mb'][name]:8.1f} MB  {r['memory_vs_dense'][name]:5.2f}x"
                )
        return
    if args.checkpoints:
        r = benchmark_checkpoints(*args.checkpoints, args.batch_sizes[0], args.warmup, args.repeats)
        if _printed_json(args, [r]):
            return
        print(
            f"batch {r['batch_size']}, {r['img_size'][0]}x{r['img_size'][1]}, median of {r['repeats']} interleaved runs"
        )
        for name, ips in r["img_per_s"].items():
            ratio = ips / r["img_per_s"]["dense backbone" if "backbone" in name else "dense"]
            print(f"  {name:<16} {ips:9.1f} img/s  {ratio:5.2f}x  {r['gmacs'][name]:.5f} GMACs")
        return
    results = [
        benchmark(
            model,
            keep_rate=args.keep_rate,
            batch_size=batch,
            img_size=args.img_size,
            warmup=args.warmup,
            repeats=args.repeats,
            compile=args.compile,
            onnx=args.onnx,
            keep_mode=args.keep_mode,
        )
        for model in args.models
        for batch in args.batch_sizes
    ]
    if _printed_json(args, results):
        return
    for r in results:
        print(
            f"{r['model']} keep rate {r['keep_rate']}, batch {r['batch_size']}, {r['threads']} threads, "
            f"median of {r['repeats']} interleaved runs"
        )
        print(f"  {'variant':<17}{'img/s':>9}{'× dense':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'peak MB':>9}")
        for name, v in r["variants"].items():
            lat, peak = v["latency_ms"], v["peak_mb"]
            print(
                f"  {name:<17}{v['img_per_s']:>9.1f}{v['speedup']:>9.2f}{lat['p50']:>9.1f}{lat['p90']:>9.1f}"
                f"{lat['p99']:>9.1f}{'–' if peak is None else f'{peak:.1f}':>9}"
            )
        if r["adaptive_fraction_of_fixed"] is not None:
            padded = r["padded_fraction_of_fixed"]
            print(
                f"  adaptive (calibrated to the fixed counts, packed): {r['adaptive_fraction_of_fixed']:.3f} of fixed"
                + ("" if padded is None else f"; padded instead of packed: {padded:.3f}")
            )
            print(_per_image_lines(r["per_image"]))
        if r["fraction_of_limit"] is not None:
            print(
                f"  limit = same token counts sliced, no predictor; sparse: {r['fraction_of_limit']:.3f} of it, "
                f"limit+predictors (scores computed, tokens sliced): {r['predictors_fraction_of_limit']:.3f}"
            )


_DATA_FIELDS = ("data", "data_dir", "canvas", "distractors", "distractors_max", "train_limit", "val_limit")
_PARSERS = {"int": int, "float": float, "str": str, "list[int]": int, "list[float]": float, "dict": json.loads}


def add_config_args(p: argparse.ArgumentParser, names: Sequence[str] | None = None, skip: Sequence[str] = ()) -> None:
    """One flag per :class:`TrainConfig` field (or the ``names`` among them), help text from the field.

    Every flag defaults to ``None`` – "not given" – so a config (the defaults, or a checkpoint's
    saved one) is overridden only by what the user passed."""
    for f in dataclasses.fields(TrainConfig):
        if (names is not None and f.name not in names) or f.name in skip:
            continue
        meta = f.metadata
        kwargs = {"dest": f.name, "default": None, "help": meta["help"]}
        kind = str(f.type).removesuffix(" | None")
        if kind == "bool":
            kwargs["action"] = "store_false" if f.default else "store_true"
        else:
            kwargs["type"] = _PARSERS[kind]
            kwargs["nargs"] = "+" if kind.startswith("list") else None
            kwargs["choices"] = meta.get("choices")
        p.add_argument(*field_flags(f), **kwargs)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The defaults, with every config flag the user gave on top."""
    given = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(TrainConfig)}
    return TrainConfig.from_dict(
        {**dataclasses.asdict(TrainConfig()), **{k: v for k, v in given.items() if v is not None}}
    )


def _cmd_train(args: argparse.Namespace) -> None:
    from dynamicvit.train.trainer import train

    record = train(config_from_args(args))
    if record and os.environ.get("RANK", "0") == "0":
        print(json.dumps(record, indent=2))


def _cmd_compare(args: argparse.Namespace) -> None:
    from dynamicvit.tools.compare import run_compare

    cfg = config_from_args(args)
    run_compare(
        cfg,
        budgets=args.budgets,
        methods=args.methods or tuple(METHODS),
        out_dir=args.out_dir,
        bench_batch=args.bench_batch,
        bench_repeats=args.bench_repeats,
    )
    print((Path(args.out_dir) / "compare.md").read_text())


def _printed_json(args: argparse.Namespace, results: list[dict]) -> bool:
    """With ``--json``: print the result (a list when there are several) and say so."""
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    return args.json


def _size(img_size: int | None) -> dict:
    return {} if img_size is None else {"img_size": img_size}


def _cmd_tune(args: argparse.Namespace) -> None:
    from dynamicvit.tools.tune import tune

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


def _cmd_eval(args: argparse.Namespace) -> None:
    from dynamicvit.core.losses import is_encoder
    from dynamicvit.methods import random_selector
    from dynamicvit.tools.viz import TASK_PICTURES
    from dynamicvit.train.build import build_run_dataset
    from dynamicvit.train.evaluate import evaluate, load_for_eval

    overrides = {
        k: getattr(args, k)
        for k in (*_DATA_FIELDS, "model", "model_kwargs", "keep_rate", "task", "img_size", "keep_mode", "thresholds")
        if getattr(args, k, None) is not None
    }
    if args.picture:
        check_writable(args.picture, "--picture")
    model, dataset, cfg = load_for_eval(args.checkpoint, ema=not args.no_ema, **overrides)
    draw = TASK_PICTURES.get(cfg.task)
    if args.picture and draw is None:
        raise ValueError(
            f"--picture draws {' or '.join(TASK_PICTURES)} results; this checkpoint is a {cfg.task} model (use viz)"
        )
    reference = build_run_dataset(cfg, "train") if is_encoder(model) else None  # k-NN against training images
    r = evaluate(
        model, dataset, cfg, decisions_fn=random_selector(cfg.seed) if args.random else None, reference=reference
    )
    if args.picture:
        draw(model, dataset, args.picture)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    print("  ".join(f"{k} {v}" for k, v in r.items() if k != "per_image"))
    if "per_image" in r:
        print(_per_image_lines(r["per_image"]))


def _per_image_lines(report: dict) -> str:
    """The per-image distribution of kept tokens and GMACs, one line each."""
    lines = [f"per image ({report['images']} images): mean / p10 / p50 / p90"]
    rows = {**{f"tokens {k}": v for k, v in report["tokens"].items()}, "GMACs": report["gmacs"]}
    for name, d in rows.items():
        lines.append(f"  {name:<16}{d['mean']:>9.3f}{d['p10']:>9.3f}{d['p50']:>9.3f}{d['p90']:>9.3f}")
    return "\n".join(lines)


def _cmd_viz(args: argparse.Namespace) -> None:
    from dynamicvit.data import class_names
    from dynamicvit.tools.viz import visualize_files
    from dynamicvit.train.build import load_trained

    overrides = {
        k: getattr(args, k) for k in ("model", "keep_rate", "img_size", "keep_mode") if getattr(args, k) is not None
    }
    check_writable(args.out, "--out")
    model, cfg = load_trained(args.checkpoint, ema=not args.no_ema, **overrides)
    names = class_names(getattr(model, "num_classes", 0), cfg.data)
    for row in visualize_files(model, args.images, args.out, class_names=names):
        print(f"{row['image']}: {row['prediction']}, kept {' / '.join(map(str, row['kept_tokens']))} tokens")
    print(f"written to {args.out}")


def _cmd_export(args: argparse.Namespace) -> None:
    from dynamicvit.tools.export import export_onnx

    check_writable(args.onnx, "--onnx")
    if args.pretrained and not args.checkpoint and args.model in ZOO:  # the release's file, not timm's dense one
        args.checkpoint = str(download(args.model))
    if args.checkpoint:
        from dynamicvit.train.build import load_trained

        overrides = {k: getattr(args, k) for k in ("model", "img_size") if getattr(args, k) is not None}
        model, _ = load_trained(args.checkpoint, ema=not args.no_ema, **overrides)
    elif args.model:
        from dynamicvit.methods import apply_method
        from dynamicvit.models import build_timm_model
        from dynamicvit.weights.zoo import resolve

        arch, rate, options = resolve(args.model, args.keep_rate)
        kwargs = {"img_size": args.img_size} if args.img_size else {}
        model = build_timm_model(arch, pretrained=args.pretrained, **kwargs)
        if args.method in METHODS:  # otherwise "dense"
            model = apply_method(model, args.method, keep_rate=rate, **options)
    else:
        raise ValueError("give --checkpoint PATH or --model NAME")
    r = export_onnx(model, args.onnx, opset=args.opset, check=not args.no_check)
    parity = f", max |onnx − torch| = {r['max_abs_diff']:.2e}" if "max_abs_diff" in r else ""
    print(f"wrote {r['path']} ({r['bytes'] / 1e6:.1f} MB, dynamic batch){parity}")
    if r.get("max_abs_diff", 0.0) > args.tolerance:
        raise ValueError(
            f"the ONNX file differs from PyTorch by {r['max_abs_diff']:.2e} > --tolerance {args.tolerance:g}"
        )


def _cmd_demo(args: argparse.Namespace) -> None:
    from dynamicvit.tools.demo import DemoConfig, run_demo

    overrides = {"out_dir": args.out, "data_dir": args.data_dir}
    cfg = DemoConfig.quick(**overrides) if args.quick else DemoConfig(**overrides)
    summary = run_demo(cfg, command="dynamicvit demo" + (" --quick" if args.quick else ""))
    print((Path(args.out) / "report.md").read_text())
    print(f"report written to {args.out}/report.md ({summary['total_seconds']:.0f} s)")


def _cmd_calibrate(args: argparse.Namespace) -> None:
    from dynamicvit.core.calibrate import MIN_CALIBRATION_IMAGES, calibrate
    from dynamicvit.train.build import build_run_dataset, load_trained
    from dynamicvit.weights.checkpoint import read_checkpoint, save_checkpoint

    if args.images < MIN_CALIBRATION_IMAGES:
        raise ValueError(f"--images must be at least {MIN_CALIBRATION_IMAGES}, got {args.images}")
    check_writable(args.out, "--out")
    if Path(args.out).exists() and not args.overwrite:
        raise ValueError(f"--out {args.out} exists; pass --overwrite to replace it")
    overrides = {
        k: getattr(args, k) for k in (*_DATA_FIELDS, "model", "keep_rate") if getattr(args, k, None) is not None
    }
    saved = read_checkpoint(args.checkpoint)
    model, cfg = load_trained(saved, ema=not args.no_ema, **overrides)
    held_out = build_run_dataset(dataclasses.replace(cfg, train_limit=args.images), "train")  # not the test split
    r = calibrate(model, held_out, batch_size=args.batch_size)
    config = saved.get("config", {}) if isinstance(saved, dict) else {}
    config = {**config, **overrides, "keep_mode": "adaptive", "thresholds": r["thresholds"]}
    save_checkpoint(model, args.out, config=config)
    print(f"calibrated on {r['images']} training images (not the test split)")
    print(f"{'stage':<8}{'threshold':>10}{'target':>9}{'reached':>9}")
    for s, (t, goal, got) in enumerate(zip(r["thresholds"], r["targets"], r["reached"], strict=True)):
        print(f"{s + 1:<8}{t:>10.4f}{goal:>9.4f}{got:>9.4f}")
    print(f"written to {args.out} (keep mode adaptive; dynamicvit eval --checkpoint {args.out})")


def _cmd_models(args: argparse.Namespace) -> None:
    from dynamicvit.weights.zoo import list_models

    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no zoo model matches {args.pattern!r}")
    print(f"{'name':<32}{'backbone':<31}{'rho':>5}{'top-1':>7}{'GMACs':>7}  url")
    for name in names:
        e = ZOO[name]
        print(f"{name:<32}{e.arch:<31}{e.keep_rate:>5}{e.top1:>7.2f}{e.paper_gmacs:>7.1f}  {e.url}")
    print("top-1 (ImageNet-1k) and GMACs as the release publishes them; dynamicvit.create_model(name, pretrained=True)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynamicvit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="train a dense teacher and a DynamicViT on Cluttered Fashion-MNIST; report")
    p.add_argument("--out", default="runs/demo", help="report folder")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run on a few hundred images")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("train", help="distillation fine-tuning of a sparse model (or --dense training)")
    add_config_args(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("compare", help="every token-reduction method at matched MACs: table and plots")
    add_config_args(p, skip=("out_dir",))
    p.add_argument(
        "--budgets", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8, 0.9], help="fractions of dense MACs"
    )
    p.add_argument("--methods", nargs="+", default=None, help="subset of: " + " ".join(METHODS))
    p.add_argument("--bench-batch", type=int, default=64)
    p.add_argument("--bench-repeats", type=int, default=10)
    p.add_argument("--out", dest="out_dir", default="runs/compare", help="report folder")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("eval", help="top-1, kept tokens, GMACs and img/s of a checkpoint")
    p.add_argument("--checkpoint", required=True)
    add_config_args(
        p, names=("model", "model_kwargs", "keep_rate", "task", "img_size", "keep_mode", "thresholds", *_DATA_FIELDS)
    )
    p.add_argument("--random", action="store_true", help="random token selection at the same counts")
    p.add_argument("--no-ema", action="store_true", help="the raw weights even when the checkpoint has EMA ones")
    p.add_argument(
        "--picture",
        default=None,
        help="segmentation / detection: PNG of inputs, labels or boxes, predictions, kept locations",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser(
        "calibrate", help="adaptive keep mode: per-stage thresholds meeting the budget on held-out images"
    )
    p.add_argument("--checkpoint", required=True, help="a trained sparse model (training checkpoint or release file)")
    p.add_argument("--out", required=True, help="checkpoint to write: the model with its thresholds, adaptive mode")
    p.add_argument("--images", type=int, default=512, help="training images to calibrate on (held out from testing)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--no-ema", action="store_true", help="the raw weights even when the checkpoint has EMA ones")
    add_config_args(p, names=("model", "keep_rate", *_DATA_FIELDS))  # default: the checkpoint's
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("viz", help="draw which tokens a trained model keeps on image files (PNG)")
    p.add_argument("images", nargs="+", help="image files (any size; resized to the model's input)")
    p.add_argument("--checkpoint", required=True, help="a training checkpoint or a release file")
    p.add_argument("--model", default=None, help="timm or zoo name (default: from the checkpoint's config)")
    p.add_argument("--keep-rate", type=float, default=None)
    p.add_argument("--img-size", type=int, default=None, help="input resolution (ViT position embeddings resampled)")
    p.add_argument("--keep-mode", choices=KEEP_MODES, default=None, help="default: the checkpoint's (fixed)")
    p.add_argument("--out", default="kept_tokens.png", help="PNG to write")
    p.add_argument("--no-ema", action="store_true", help="the raw weights even when the checkpoint has EMA ones")
    p.set_defaults(func=_cmd_viz)

    p = sub.add_parser("export", help="ONNX file of an eval-mode model, dynamic batch, checked with onnxruntime")
    p.add_argument("--onnx", required=True, metavar="PATH", help="ONNX file to write")
    p.add_argument("--checkpoint", default=None, help="a training checkpoint (its model and config) or a release file")
    p.add_argument(
        "--model", default=None, help="timm or zoo name: alone, untrained predictors; with a release file, its model"
    )
    p.add_argument("--method", default="dynamicvit", choices=["dense", *METHODS])
    p.add_argument("--keep-rate", type=float, default=None, help="keep ratio rho (default: zoo's, else 0.7)")
    p.add_argument("--img-size", type=int, default=None)
    p.add_argument("--pretrained", action="store_true")
    p.add_argument("--opset", type=int, default=None)
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest |onnx − torch| logit difference accepted")
    p.add_argument("--no-ema", action="store_true", help="the raw weights even when the checkpoint has EMA ones")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("models", help="the release's pretrained sparse models (the zoo)")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'dynamicvit_convnext*'")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("flops", help="multiply-accumulates of dense vs sparse, per stage")
    _add_model_args(p)
    p.set_defaults(func=_cmd_flops)

    p = sub.add_parser("tune", help="the keep rate that reaches a measured speed-up or time per batch on this machine")
    p.add_argument("--model", required=True, help="timm or zoo model name")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-speedup", type=float, help="img/s over the dense model's, e.g. 1.5")
    target.add_argument("--target-ms", type=float, help="milliseconds per batch")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--img-size", type=int, default=None, help="input resolution (default: the model's)")
    p.add_argument("--rates", type=float, nargs="+", default=None, help="keep rates to try (default 0.9 ... 0.3)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_tune)

    p = sub.add_parser("bench", help="measured img/s, latency and memory of dense vs sparse (and the slicing limit)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", "--models", dest="models", nargs="+", help="timm or zoo model name(s)")
    which.add_argument(
        "--checkpoints",
        nargs=2,
        metavar=("DENSE", "SPARSE"),
        help="two trained models (classifiers, segmenters, detectors): img/s of both and of their backbones",
    )
    p.add_argument("--keep-rate", type=float, default=None, help="keep ratio rho in (0, 1] (default: zoo's, else 0.7)")
    p.add_argument("--img-size", type=int, default=None, help="input resolution (default: the model's)")
    p.add_argument("--batch-size", "--batch-sizes", dest="batch_sizes", type=int, nargs="+", default=[32])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd dense and sparse")
    p.add_argument("--onnx", action="store_true", help="also time the ONNX exports with onnxruntime")
    p.add_argument("--keep-mode", choices=KEEP_MODES, default="fixed", help="adaptive: also time the adaptive mode")
    p.add_argument(
        "--training",
        action="store_true",
        help="time and memory of a training step: dense, fine-tune (also with a frozen prefix), calibrate",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, TypeError, CheckpointError, FileNotFoundError, TrainingError, ImportError) as err:
        print(f"dynamicvit {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0
