"""``dynamicvit export``: ONNX file of an eval-mode model, dynamic batch, checked with onnxruntime."""

from __future__ import annotations

import argparse

from dynamicvit.cli.arguments import (
    add_model_kwargs,
    non_negative_float,
    positive,
    rate,
)
from dynamicvit.cli.registry import Command, register_command
from dynamicvit.core.files import check_writable
from dynamicvit.methods.registry import METHODS
from dynamicvit.weights.download import download
from dynamicvit.weights.zoo import ZOO


def arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``dynamicvit export``."""
    p.add_argument("--onnx", required=True, metavar="PATH", help="ONNX file to write")
    p.add_argument("--checkpoint", default=None, help="a training checkpoint (its model and config) or a release file")
    p.add_argument(
        "--model", default=None, help="timm or zoo name: alone, untrained predictors; with a release file, its model"
    )
    add_model_kwargs(p)
    p.add_argument("--method", default="dynamicvit", choices=["dense", *METHODS], help="how the model is reduced")
    p.add_argument("--keep-rate", type=rate, default=None, help="keep ratio rho (default: zoo's, else 0.7)")
    p.add_argument("--img-size", type=positive, default=None, help="input resolution (default: the model's)")
    p.add_argument("--pretrained", action="store_true", help="load the model's pretrained (release) weights")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    p.add_argument(
        "--tolerance", type=non_negative_float, default=1e-4, help="largest |onnx − torch| logit difference accepted"
    )
    p.add_argument("--no-ema", action="store_true", help="the raw weights even when the checkpoint has EMA ones")


def run(args: argparse.Namespace) -> None:
    """Run ``dynamicvit export`` on its parsed arguments."""
    from dynamicvit.export import check_opset, export_onnx

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


register_command(
    Command(
        "export",
        arguments=arguments,
        run=run,
        help="ONNX file of an eval-mode model, dynamic batch, checked with onnxruntime",
    )
)
