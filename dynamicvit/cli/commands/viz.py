"""``dynamicvit viz``: draw which tokens a trained model keeps on image files (PNG)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dynamicvit.cli.arguments import (
    add_model_kwargs,
    positive,
    rate,
)
from dynamicvit.cli.registry import Command, register_command
from dynamicvit.core.files import check_writable
from dynamicvit.core.keep import KEEP_RULES


def arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``dynamicvit viz``."""
    p.add_argument("images", nargs="+", help="image files (any size; resized to the model's input)")
    p.add_argument("--checkpoint", required=True, help="a training checkpoint or a release file")
    p.add_argument("--model", default=None, help="timm or zoo name (default: from the checkpoint's config)")
    add_model_kwargs(p)
    p.add_argument("--keep-rate", type=rate, default=None, help="keep ratio rho (default: the checkpoint's)")
    p.add_argument(
        "--img-size", type=positive, default=None, help="input resolution (ViT position embeddings resampled)"
    )
    p.add_argument("--keep-mode", choices=KEEP_RULES, default=None, help="keep rule (default: the checkpoint's)")
    p.add_argument("--out", default="kept_tokens.png", help="PNG to write")
    p.add_argument("--no-ema", action="store_true", help="the raw weights even when the checkpoint has EMA ones")


def run(args: argparse.Namespace) -> None:
    """Run ``dynamicvit viz`` on its parsed arguments."""
    from dynamicvit.builder import load_trained
    from dynamicvit.data.registry import class_names
    from dynamicvit.frontend.viz import visualize_files

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
    names = class_names(getattr(model, "num_classes", 0), cfg.data.dataset)
    for row in visualize_files(model, args.images, args.out, class_names=names):
        print(f"{row['image']}: {row['prediction']}, kept {' / '.join(map(str, row['kept_tokens']))} tokens")
    print(f"written to {args.out}")


register_command(
    Command("viz", arguments=arguments, run=run, help="draw which tokens a trained model keeps on image files (PNG)")
)
