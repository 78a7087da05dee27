"""The command line's argument parser: one function per sub-command adds its arguments; the command of
the same name in :mod:`dynamicvit.cli.commands` runs it."""

from __future__ import annotations

import argparse
import json

from dynamicvit.cli.config_args import DATA_FIELDS, add_config_args
from dynamicvit.config.regimes import REGIMES
from dynamicvit.core.keep import DEFAULT_KEEP_MODE, KEEP_RULES, untrained_rules
from dynamicvit.methods.registry import METHODS

__all__ = ["build_parser"]

DESCRIPTION = "dynamicvit: dynamic spatial sparsification for timm vision models (also python -m dynamicvit)."


def _add_method_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--method",
        default="dynamicvit",
        choices=list(METHODS),
        help="how the model is reduced; a method whose knob is not the keep rate (ToMe's, MCTF's r) is tuned to "
        "DynamicViT's MACs at --keep-rate",
    )


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="timm or zoo model name, e.g. deit_small_patch16_224")
    _add_method_arg(p)
    p.add_argument("--keep-rate", type=_rate, default=None, help="keep ratio rho in (0, 1] (default: zoo's, else 0.7)")
    p.add_argument("--img-size", type=_positive, default=None, help="input resolution (default: the model's)")
    p.add_argument(
        "--keep-mode", choices=untrained_rules(), default=DEFAULT_KEEP_MODE, help="per-image modes are calibrated"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


class DefaultsFormatter(argparse.RawDescriptionHelpFormatter):
    """Help with every flag's default shown (unless it says nothing: unset, off, empty or already in the text),
    and epilogs printed as written (the examples)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or action.default in (None, False, "", argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``dynamicvit bench: error: argument --repeats: ...``)
    and exit status 2, like the commands' own errors; ``--help`` shows the usage, defaults and examples."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


TRAIN_EXAMPLES = """examples:
  # a dense teacher, then its sparse student (the demo's data, 2 CPU cores: minutes)
  dynamicvit train --dense --model dvit_tiny_fmnist --data cluttered-fashion-mnist --canvas 48 --out runs/teacher
  dynamicvit train --model dvit_tiny_fmnist --data cluttered-fashion-mnist --canvas 48 \\
      --teacher-checkpoint runs/teacher/last.pth --keep-rate 0.7 --out runs/sparse
  # the paper's DeiT-S recipe (ImageNet folders; torchrun for several GPUs)
  dynamicvit train --config recipes/deit_small.yaml --data-dir /data/imagenet --out runs/deit_s
  dynamicvit train --config recipes/deit_small.yaml --dry-run   # check and print the configuration
"""

COMPARE_EXAMPLES = """examples:
  # every method at three budgets, backbone frozen and fine-tuned, two seeds
  dynamicvit compare --model dvit_tiny_fmnist --model-kwargs '{"depth": 6}' --data cluttered-fashion-mnist \\
      --canvas 48 --img-size 48 --teacher-checkpoint runs/teacher/last.pth --epochs 1 \\
      --budgets 0.5 0.65 0.8 --regime frozen finetune --seeds 0 1 --out runs/compare
  # two methods only
  dynamicvit compare ... --methods dynamicvit tome
"""

BENCH_EXAMPLES = """examples:
  dynamicvit bench --model deit_small_patch16_224 --keep-rate 0.7 --batch-size 1 32   # img/s, dense vs sparse
  dynamicvit bench --model dynamicvit_deit_s.r0_7 --onnx --save bench.json          # with onnxruntime
  dynamicvit bench --checkpoints runs/teacher/last.pth runs/sparse/last.pth         # two trained models
"""


def _number(kind: type, test, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    return parse


_positive = _number(int, lambda v: v >= 1, "at least 1")
_non_negative = _number(int, lambda v: v >= 0, "0 or more")
_positive_float = _number(float, lambda v: v > 0, "positive")
_port = _number(int, lambda v: 1 <= v <= 65535, "a port in 1..65535")
_non_negative_float = _number(float, lambda v: v >= 0, "0 or more")
_rate = _number(float, lambda v: 0 < v <= 1, "in (0, 1]")


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not JSON: {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object: {text!r}")
    return value


def _add_model_kwargs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-kwargs", type=_json_object, default=None, help="JSON object of timm.create_model arguments")


def _demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train a dense teacher and a DynamicViT on Cluttered Fashion-MNIST; report")
    p.add_argument("--out", default="runs/demo", help="report folder")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: the data set's own lookup)")
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run on a few hundred images")
    p.add_argument("--resume", action="store_true", help="reuse the finished runs of an earlier demo in --out")
    p.add_argument("--overwrite", action="store_true", help="start over in an --out that holds an earlier demo")


def _train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="distillation fine-tuning of a sparse model (or --dense training)",
        description="Distillation fine-tuning of a sparse model from its dense teacher, or --dense training.",
        epilog=TRAIN_EXAMPLES,
    )
    p.add_argument(
        "--config",
        default=None,
        help="a YAML recipe of config fields (e.g. recipes/deit_small.yaml); flags override it",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="check the configuration, print it as YAML and exit (reads no data)"
    )
    add_config_args(p)


def _compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="every token-reduction method at matched MACs: table and plots",
        description="Every token-reduction method at matched MACs, trained rows over seeds: table, plots, leaders.",
        epilog=COMPARE_EXAMPLES,
    )
    add_config_args(p, skip=("out_dir",))
    p.add_argument(
        "--budgets", type=_rate, nargs="+", default=[0.5, 0.6, 0.7, 0.8, 0.9], help="fractions of dense MACs"
    )
    p.add_argument("--methods", nargs="+", default=None, help="subset of: " + " ".join(METHODS))
    p.add_argument(
        "--regime",
        dest="regimes",
        nargs="+",
        choices=REGIMES,
        default=None,
        help="frozen: only a method's own parameters learn; finetune: every method fine-tuned with the recipe "
        "(default: what the recipe's --freeze-backbone-epochs implies)",
    )
    p.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="training seeds of the trained rows (default: --seed)"
    )
    p.add_argument("--bench-batch", type=_positive, default=64, help="images per timed call (batch 1 is timed too)")
    p.add_argument("--bench-repeats", type=_positive, default=10, help="timed rounds per batch size")
    p.add_argument("--out", dest="out_dir", default="runs/compare", help="report folder")


def _eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="top-1, kept tokens, GMACs and img/s of a checkpoint")
    p.add_argument("--checkpoint", required=True, help="a training checkpoint or a release file to evaluate")
    add_config_args(
        p, names=("model", "model_kwargs", "keep_rate", "task", "img_size", "keep_mode", "thresholds", *DATA_FIELDS)
    )
    p.add_argument("--random", action="store_true", help="random token selection at the same counts")
    p.add_argument("--no-ema", action="store_true", help="the raw weights even when the checkpoint has EMA ones")
    p.add_argument(
        "--picture",
        default=None,
        help="segmentation / detection: PNG of inputs, labels or boxes, predictions, kept locations",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--save", metavar="FILE", default=None, help="also write the result with its provenance as JSON")


def _calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="per-image budgets meeting the fixed mode's mean cost on held-out images: the adaptive mode's "
        "thresholds, or a learned-mode model's budget offsets",
    )
    p.add_argument("--checkpoint", required=True, help="a trained sparse model (training checkpoint or release file)")
    p.add_argument("--out", required=True, help="checkpoint to write: the calibrated model")
    p.add_argument(
        "--images", type=_positive, default=512, help="training images to calibrate on (held out from testing)"
    )
    p.add_argument("--batch-size", type=_positive, default=64, help="images per calibration forward")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--no-ema", action="store_true", help="the raw weights even when the checkpoint has EMA ones")
    add_config_args(
        p, names=("model", "model_kwargs", "keep_rate", "img_size", *DATA_FIELDS)
    )  # default: the checkpoint's


def _viz(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("viz", help="draw which tokens a trained model keeps on image files (PNG)")
    p.add_argument("images", nargs="+", help="image files (any size; resized to the model's input)")
    p.add_argument("--checkpoint", required=True, help="a training checkpoint or a release file")
    p.add_argument("--model", default=None, help="timm or zoo name (default: from the checkpoint's config)")
    _add_model_kwargs(p)
    p.add_argument("--keep-rate", type=_rate, default=None, help="keep ratio rho (default: the checkpoint's)")
    p.add_argument(
        "--img-size", type=_positive, default=None, help="input resolution (ViT position embeddings resampled)"
    )
    p.add_argument("--keep-mode", choices=KEEP_RULES, default=None, help="keep rule (default: the checkpoint's)")
    p.add_argument("--out", default="kept_tokens.png", help="PNG to write")
    p.add_argument("--no-ema", action="store_true", help="the raw weights even when the checkpoint has EMA ones")


def _export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="ONNX file of an eval-mode model, dynamic batch, checked with onnxruntime")
    p.add_argument("--onnx", required=True, metavar="PATH", help="ONNX file to write")
    p.add_argument("--checkpoint", default=None, help="a training checkpoint (its model and config) or a release file")
    p.add_argument(
        "--model", default=None, help="timm or zoo name: alone, untrained predictors; with a release file, its model"
    )
    _add_model_kwargs(p)
    p.add_argument("--method", default="dynamicvit", choices=["dense", *METHODS], help="how the model is reduced")
    p.add_argument("--keep-rate", type=_rate, default=None, help="keep ratio rho (default: zoo's, else 0.7)")
    p.add_argument("--img-size", type=_positive, default=None, help="input resolution (default: the model's)")
    p.add_argument("--pretrained", action="store_true", help="load the model's pretrained (release) weights")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    p.add_argument(
        "--tolerance", type=_non_negative_float, default=1e-4, help="largest |onnx − torch| logit difference accepted"
    )
    p.add_argument("--no-ema", action="store_true", help="the raw weights even when the checkpoint has EMA ones")


def _app(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="a local web page: upload images, move the keep rate, see the kept tokens")
    p.add_argument(
        "--model",
        default=None,
        help="timm or zoo name the page starts with (default: the training checkpoint's own model, else "
        "deit_small_patch16_224)",
    )
    p.add_argument("--checkpoint", default="", help="a training checkpoint (or a release file with --model)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: this machine only)")
    p.add_argument("--port", type=_port, default=7860, help="port to serve on")


def _models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="the release's pretrained sparse models (the zoo)")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'dynamicvit_convnext*'")


def _flops(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flops", help="multiply-accumulates of dense vs sparse, per stage")
    _add_model_args(p)
    p.add_argument("--save", metavar="FILE", default=None, help="also write the result with its provenance as JSON")


def _tune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="the keep rate that reaches a measured speed-up or time per batch on this machine")
    p.add_argument("--model", required=True, help="timm or zoo model name")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-speedup", type=_positive_float, help="img/s over the dense model's, e.g. 1.5")
    target.add_argument("--target-ms", type=_positive_float, help="milliseconds per batch")
    p.add_argument("--batch-size", type=_positive, default=32, help="images per timed call")
    p.add_argument("--img-size", type=_positive, default=None, help="input resolution (default: the model's)")
    p.add_argument("--rates", type=_rate, nargs="+", default=None, help="keep rates to try (default 0.9 ... 0.3)")
    p.add_argument("--warmup", type=_non_negative, default=2, help="untimed calls first")
    p.add_argument("--repeats", type=_positive, default=5, help="timed calls per keep rate")
    p.add_argument("--save", metavar="FILE", default=None, help="also write the results with their provenance as JSON")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measured img/s, latency and memory of dense vs sparse (and the slicing limit)",
        description="Measured img/s, latency and memory of dense vs sparse, timed interleaved in one process.",
        epilog=BENCH_EXAMPLES,
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", "--models", dest="models", nargs="+", help="timm or zoo model name(s)")
    which.add_argument(
        "--checkpoints",
        nargs=2,
        metavar=("DENSE", "SPARSE"),
        help="two trained models (classifiers, segmenters, detectors): img/s of both and of their backbones",
    )
    _add_method_arg(p)
    p.add_argument("--keep-rate", type=_rate, default=None, help="keep ratio rho in (0, 1] (default: zoo's, else 0.7)")
    p.add_argument("--img-size", type=_positive, default=None, help="input resolution (default: the model's)")
    p.add_argument(
        "--batch-size",
        "--batch-sizes",
        dest="batch_sizes",
        type=_positive,
        nargs="+",
        default=[32],
        help="batch sizes to time",
    )
    p.add_argument("--warmup", type=_non_negative, default=3, help="untimed calls first")
    p.add_argument("--repeats", type=_positive, default=10, help="timed calls per model, interleaved")
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


_COMMANDS = (_demo, _train, _compare, _eval, _calibrate, _viz, _export, _app, _models, _flops, _tune, _bench)


def build_parser() -> argparse.ArgumentParser:
    """The ``dynamicvit`` parser; ``args.command`` names the sub-command given."""
    parser = OneLineParser(prog="dynamicvit", description=DESCRIPTION)
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (also DYNAMICVIT_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser
