"""``dynamicvit calibrate``: per-image budgets meeting the fixed mode's mean cost on held-out images (the
adaptive mode's thresholds, or a learned-mode model's budget offsets)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dynamicvit.cli.arguments import (
    positive,
)
from dynamicvit.cli.config_args import DATA_FIELDS, add_config_args
from dynamicvit.cli.registry import Command, register_command
from dynamicvit.core.files import check_writable


def arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``dynamicvit calibrate``."""
    p.add_argument("--checkpoint", required=True, help="a trained sparse model (training checkpoint or release file)")
    p.add_argument("--out", required=True, help="checkpoint to write: the calibrated model")
    p.add_argument(
        "--images", type=positive, default=512, help="training images to calibrate on (held out from testing)"
    )
    p.add_argument("--batch-size", type=positive, default=64, help="images per calibration forward")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--no-ema", action="store_true", help="the raw weights even when the checkpoint has EMA ones")
    add_config_args(p, names=("model", "model_kwargs", "keep_rate", *DATA_FIELDS))  # default: the checkpoint's


def run(args: argparse.Namespace) -> None:
    """Run ``dynamicvit calibrate`` on its parsed arguments."""
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
        for k in (*DATA_FIELDS, "model", "model_kwargs", "keep_rate")
        if getattr(args, k, None) is not None
    }
    saved = read_checkpoint(args.checkpoint)
    model, cfg = load_trained(saved, ema=not args.no_ema, **overrides)
    held_out = build_run_dataset(cfg.replace(train_limit=args.images), "train")  # not the test split
    r = calibrate(model, held_out, batch_size=args.batch_size)
    config = saved.get("config", {}) if isinstance(saved, dict) else {}
    # the learned mode's offsets are buffers of its budget predictors: saved with the weights
    config = {**config, **overrides, "keep_mode": r["mode"], "thresholds": r.get("thresholds")}
    save_checkpoint(model, args.out, config=config)
    name, values = ("min p(keep)", r["thresholds"]) if "thresholds" in r else ("offset", r["offsets"])
    print(f"calibrated on {r['images']} training images (not the test split)")
    print(f"{'stage':<8}{name:>12}{'target':>9}{'reached':>9}")
    for s, (t, goal, got) in enumerate(zip(values, r["targets"], r["reached"], strict=True)):
        print(f"{s + 1:<8}{t:>12.4f}{goal:>9.4f}{got:>9.4f}")
    print(f"written to {args.out} (keep mode {r['mode']}; dynamicvit eval --checkpoint {args.out})")


register_command(
    Command(
        "calibrate",
        arguments=arguments,
        run=run,
        help="per-image budgets meeting the fixed mode's mean cost on held-out images: the adaptive mode's "
        "thresholds, or a learned-mode model's budget offsets",
    )
)
