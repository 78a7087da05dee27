"""``dynamicvit eval``: top-1, kept tokens, GMACs and img/s of a checkpoint."""

from __future__ import annotations

import argparse
import json

from dynamicvit.cli.config_args import DATA_FIELDS, add_config_args
from dynamicvit.cli.output import check_save, per_image_lines, save_result
from dynamicvit.cli.registry import Command, register_command
from dynamicvit.core.files import check_writable
from dynamicvit.tasks.registry import TASKS, get_task


def arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``dynamicvit eval``."""
    p.add_argument("--checkpoint", required=True, help="a training checkpoint or a release file to evaluate")
    add_config_args(p, names=("model", "model_kwargs", "keep_rate", "task", "keep_mode", "thresholds", *DATA_FIELDS))
    p.add_argument("--random", action="store_true", help="random token selection at the same counts")
    p.add_argument("--no-ema", action="store_true", help="the raw weights even when the checkpoint has EMA ones")
    pictures = "; ".join(f"{t.name}: {t.picture}" for t in TASKS.values() if t.picture)
    p.add_argument("--picture", default=None, metavar="PNG", help=f"a picture of the first results ({pictures})")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--save", metavar="FILE", default=None, help="also write the result with its provenance as JSON")


def run(args: argparse.Namespace) -> None:
    """Run ``dynamicvit eval`` on its parsed arguments."""
    from dynamicvit.builder import evaluate_run, load_for_eval

    overrides = {
        k: getattr(args, k)
        for k in (*DATA_FIELDS, "model", "model_kwargs", "keep_rate", "task", "keep_mode", "thresholds")
        if getattr(args, k, None) is not None
    }
    if args.picture:
        check_writable(args.picture, "--picture")
    check_save(args)
    model, dataset, cfg = load_for_eval(args.checkpoint, ema=not args.no_ema, **overrides)
    task = get_task(cfg.model.task)
    if args.picture and not task.picture:
        drawn = " or ".join(t.name for t in TASKS.values() if t.picture)
        raise ValueError(f"--picture draws {drawn} results; this checkpoint is a {cfg.model.task} model (use viz)")
    r = evaluate_run(model, dataset, cfg, random_tokens=args.random)
    if args.picture:
        task.save_picture(model, dataset, args.picture)
    save_result(args, {"checkpoint": args.checkpoint, **r})
    if args.json:
        print(json.dumps(r, indent=2))
        return
    print("  ".join(f"{k} {v}" for k, v in r.items() if k != "per_image"))
    if "per_image" in r:
        print(per_image_lines(r["per_image"]))


register_command(
    Command("eval", arguments=arguments, run=run, help="top-1, kept tokens, GMACs and img/s of a checkpoint")
)
