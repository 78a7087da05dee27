"""One function per command: each reads its parsed arguments and calls the library; :data:`COMMANDS` maps
the sub-command names of :mod:`dynamicvit.cli.parser` to them."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
from pathlib import Path

from dynamicvit.cli.bench_command import cmd_bench
from dynamicvit.cli.config_args import DATA_FIELDS, config_from_args
from dynamicvit.cli.output import check_save, per_image_lines, save_result
from dynamicvit.core.files import check_writable
from dynamicvit.core.keep import KEEP_RULES
from dynamicvit.methods.registry import METHODS
from dynamicvit.weights.download import download
from dynamicvit.weights.zoo import ZOO

__all__ = [
    "COMMANDS",
    "cmd_app",
    "cmd_bench",
    "cmd_calibrate",
    "cmd_compare",
    "cmd_demo",
    "cmd_eval",
    "cmd_export",
    "cmd_flops",
    "cmd_models",
    "cmd_train",
    "cmd_tune",
    "cmd_viz",
]


def cmd_flops(args: argparse.Namespace) -> None:
    from dynamicvit.tools.flops_report import compare_flops

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
    knob = ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in r["knob"].items())
    print(f"{r['model']} @ {h}x{w}, {r['method']} ({knob}) — GMACs per image ({r['unit']})")
    print(f"{'part':<16}{'dense':>10}{'sparse':>10}")
    for part in sparse["parts"]:
        d = dense["parts"].get(part)
        print(f"{part:<16}{'' if d is None else f'{d / 1e9:.3f}':>10}{sparse['parts'][part] / 1e9:>10.3f}")
    print(f"{'total':<16}{dense['gmacs']:>10.3f}{sparse['gmacs']:>10.3f}   ratio {r['ratio']:.3f}")
    print("tokens kept: " + ", ".join(f"{k} {v}" for k, v in sparse["tokens"].items()))
    if KEEP_RULES[args.keep_mode].per_image:
        print(f"{args.keep_mode}, calibrated to the fixed budget on 32 random images (untrained predictors):")
        print(per_image_lines(r["per_image"]))


def cmd_train(args: argparse.Namespace) -> None:
    from dynamicvit.train.trainer import train

    cfg = config_from_args(args)
    if args.dry_run:
        from dynamicvit.config import config_yaml
        from dynamicvit.train.build import resolve_config

        print(config_yaml(resolve_config(cfg)), end="")
        return
    record = train(cfg)
    if record and os.environ.get("RANK", "0") == "0":
        print(json.dumps(record, indent=2))


def cmd_compare(args: argparse.Namespace) -> None:
    from dynamicvit.tools.compare import run_compare

    cfg = config_from_args(args)
    run_compare(
        cfg,
        budgets=args.budgets,
        methods=args.methods or tuple(METHODS),
        out_dir=args.out_dir,
        bench_batch=args.bench_batch,
        bench_repeats=args.bench_repeats,
        seeds=args.seeds,
        regimes=args.regimes,
    )
    print((Path(args.out_dir) / "compare.md").read_text())


def cmd_tune(args: argparse.Namespace) -> None:
    from dynamicvit.tools.tune import tune

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


def cmd_eval(args: argparse.Namespace) -> None:
    from dynamicvit.builder import evaluate_run, load_for_eval
    from dynamicvit.tools.viz import TASK_PICTURES

    overrides = {
        k: getattr(args, k)
        for k in (*DATA_FIELDS, "model", "model_kwargs", "keep_rate", "task", "img_size", "keep_mode", "thresholds")
        if getattr(args, k, None) is not None
    }
    if args.picture:
        check_writable(args.picture, "--picture")
    check_save(args)
    model, dataset, cfg = load_for_eval(args.checkpoint, ema=not args.no_ema, **overrides)
    draw = TASK_PICTURES.get(cfg.task)
    if args.picture and draw is None:
        raise ValueError(
            f"--picture draws {' or '.join(TASK_PICTURES)} results; this checkpoint is a {cfg.task} model (use viz)"
        )
    r = evaluate_run(model, dataset, cfg, random_tokens=args.random)
    if args.picture:
        draw(model, dataset, args.picture)
    save_result(args, {"checkpoint": args.checkpoint, **r})
    if args.json:
        print(json.dumps(r, indent=2))
        return
    print("  ".join(f"{k} {v}" for k, v in r.items() if k != "per_image"))
    if "per_image" in r:
        print(per_image_lines(r["per_image"]))


def cmd_viz(args: argparse.Namespace) -> None:
    from dynamicvit.builder import load_trained
    from dynamicvit.data.registry import class_names
    from dynamicvit.tools.viz import visualize_files

    overrides = {
        k: getattr(args, k)
        for k in ("model", "model_kwargs", "keep_rate", "img_size", "keep_mode")
        if getattr(args, k) is not None
    }
    check_writable(args.out, "--out")
    missing = [image for image in args.images if not Path(image).is_file()]
    if missing:
        raise FileNotFoundError(f"no image file at {', '.join(missing)}")
    model, cfg = load_trained(args.checkpoint, ema=not args.no_ema, **overrides)
    names = class_names(getattr(model, "num_classes", 0), cfg.data)
    for row in visualize_files(model, args.images, args.out, class_names=names):
        print(f"{row['image']}: {row['prediction']}, kept {' / '.join(map(str, row['kept_tokens']))} tokens")
    print(f"written to {args.out}")


def cmd_export(args: argparse.Namespace) -> None:
    from dynamicvit.tools.export import check_opset, export_onnx

    check_writable(args.onnx, "--onnx")
    check_opset(args.opset)
    if not (args.checkpoint or args.model):
        raise ValueError("give --checkpoint PATH or --model NAME")
    if args.pretrained and not args.checkpoint and args.model in ZOO:  # the release's file, not timm's dense one
        args.checkpoint = str(download(args.model))
    if args.checkpoint:
        from dynamicvit.builder import load_trained

        overrides = {k: getattr(args, k) for k in ("model", "model_kwargs", "img_size") if getattr(args, k) is not None}
        model, _ = load_trained(args.checkpoint, ema=not args.no_ema, **overrides)
    else:
        from dynamicvit.builder import build_untrained

        model = build_untrained(
            args.model,
            args.method,
            args.keep_rate,
            args.img_size,
            pretrained=args.pretrained,
            model_kwargs=args.model_kwargs or {},
        )
    r = export_onnx(model, args.onnx, opset=args.opset, check=not args.no_check, tolerance=args.tolerance)
    parity = f", max |onnx − torch| = {r['max_abs_diff']:.2e}" if "max_abs_diff" in r else ""
    print(f"wrote {r['path']} ({r['bytes'] / 1e6:.1f} MB, dynamic batch){parity}")


def cmd_demo(args: argparse.Namespace) -> None:
    from dynamicvit.tools.demo import DemoConfig, run_demo

    overrides = {"out_dir": args.out, "data_dir": args.data_dir, "resume": args.resume, "overwrite": args.overwrite}
    cfg = DemoConfig.quick(**overrides) if args.quick else DemoConfig(**overrides)
    summary = run_demo(cfg, command=shlex.join(["dynamicvit", *args.argv]))
    print((Path(args.out) / "report.md").read_text())
    print(f"report written to {args.out}/report.md ({summary['total_seconds']:.0f} s)")


def cmd_calibrate(args: argparse.Namespace) -> None:
    from dynamicvit.builder import build_run_dataset, load_trained
    from dynamicvit.core.calibrate import MIN_CALIBRATION_IMAGES, calibrate
    from dynamicvit.weights.checkpoint import read_checkpoint, save_checkpoint

    if args.images < MIN_CALIBRATION_IMAGES:
        raise ValueError(f"--images must be at least {MIN_CALIBRATION_IMAGES}, got {args.images}")
    check_writable(args.out, "--out")
    if Path(args.out).exists() and not args.overwrite:
        raise ValueError(f"--out {args.out} exists; pass --overwrite to replace it")
    overrides = {
        k: getattr(args, k)
        for k in (*DATA_FIELDS, "model", "model_kwargs", "keep_rate", "img_size")
        if getattr(args, k, None) is not None
    }
    saved = read_checkpoint(args.checkpoint)
    model, cfg = load_trained(saved, ema=not args.no_ema, **overrides)
    held_out = build_run_dataset(dataclasses.replace(cfg, train_limit=args.images), "train")  # not the test split
    r = calibrate(model, held_out, batch_size=args.batch_size)
    config = saved.get("config", {}) if isinstance(saved, dict) else {}
    # the learned mode's offsets are buffers of its budget predictors: saved with the weights
    config = {**config, **overrides, "keep_mode": r["mode"], "thresholds": r.get("thresholds")}
    save_checkpoint(model, args.out, config=config)
    name, values = ("threshold", r["thresholds"]) if "thresholds" in r else ("offset", r["offsets"])
    print(f"calibrated on {r['images']} training images (not the test split)")
    print(f"{'stage':<8}{name:>10}{'target':>9}{'reached':>9}")
    for s, (t, goal, got) in enumerate(zip(values, r["targets"], r["reached"], strict=True)):
        print(f"{s + 1:<8}{t:>10.4f}{goal:>9.4f}{got:>9.4f}")
    print(f"written to {args.out} (keep mode {r['mode']}; dynamicvit eval --checkpoint {args.out})")


def cmd_models(args: argparse.Namespace) -> None:
    from dynamicvit.weights.zoo import list_models

    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no zoo model matches {args.pattern!r}")
    print(f"{'name':<32}{'backbone':<31}{'rho':>5}{'top-1':>7}{'GMACs':>7}  url")
    for name in names:
        e = ZOO[name]
        print(f"{name:<32}{e.arch:<31}{e.keep_rate:>5}{e.top1:>7.2f}{e.paper_gmacs:>7.1f}  {e.url}")
    print("top-1 (ImageNet-1k) and GMACs as the release publishes them; dynamicvit.create_model(name, pretrained=True)")


def cmd_app(args: argparse.Namespace) -> None:
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f"no checkpoint file at {args.checkpoint}")
    from dynamicvit.tools.app import launch

    launch(args.model, args.checkpoint, args.host, args.port)


COMMANDS = {
    "demo": cmd_demo,
    "train": cmd_train,
    "compare": cmd_compare,
    "eval": cmd_eval,
    "calibrate": cmd_calibrate,
    "viz": cmd_viz,
    "export": cmd_export,
    "app": cmd_app,
    "models": cmd_models,
    "flops": cmd_flops,
    "tune": cmd_tune,
    "bench": cmd_bench,
}
