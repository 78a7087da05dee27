"""``dynamicvit app``: a local web page (Gradio) to try a sparse model on your own pictures.

Pick a model (a training checkpoint, a release file with its zoo name, or any timm/zoo name with untrained
predictors, said so on the page), upload an image, move the keep-rate slider, switch the fixed and threshold
budgets, and see the tokens kept at each stage (drawn by :func:`dynamicvit.frontend.viz.visualize_files`, the
``viz`` command's drawing), the top-5 classes, the image's MACs and its measured latency. Models load once
per selection (cached); bad input (not an image, too large, a checkpoint of another architecture) is a
message on the page and the server keeps running. Under more load than it serves the page stays responsive:
requests run one at a time from a queue of limited size (beyond it Gradio answers that the queue is full),
and a request without its answer after a time limit is told the page is busy instead of waiting on.
"""

from __future__ import annotations

import functools
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as Timeout
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dynamicvit.bench.timing import time_callables
from dynamicvit.builder import build_untrained, load_trained
from dynamicvit.core.calibrate import calibrate, random_images
from dynamicvit.core.files import CheckpointError, atomic_write
from dynamicvit.core.flops import count_flops, per_image_gmacs
from dynamicvit.core.keep import DEFAULT_KEEP_MODE as FIXED
from dynamicvit.core.keep import KEEP_RULES, untrained_rules
from dynamicvit.data.registry import class_names
from dynamicvit.frontend.viz import visualize_files
from dynamicvit.weights.checkpoint import read_checkpoint
from dynamicvit.weights.download import cache_path
from dynamicvit.weights.zoo import ZOO

__all__ = [
    "DEFAULT_MODEL",
    "QUEUE_SIZE",
    "REQUEST_SECONDS",
    "Busy",
    "Loaded",
    "TimeLimit",
    "build_app",
    "load_model",
    "page_model",
    "run_image",
    "saved_config",
]

USER_ERRORS = (ValueError, OSError, CheckpointError, RuntimeError, KeyError)
QUEUE_SIZE = 8  # requests waiting behind the running one; Gradio tells any more that the queue is full
REQUEST_SECONDS = 60.0  # how long a request waits for its answer before the page says it is busy


class Busy(Exception):
    """A request that got no answer within the page's time limit."""


class TimeLimit:
    """Runs the page's work on one worker thread, in turn; a caller waits at most ``seconds`` for its answer.

    A request past the limit gets :class:`Busy` (its work, once started, finishes in the background and the
    next request waits its turn behind it; one not yet started is dropped), so no client waits forever.

    Args:
        seconds: the longest wait for an answer.
    """

    def __init__(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"the request time limit must be > 0 seconds, got {seconds}")
        self.seconds = seconds
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dynamicvit-app")

    def __call__(self, fn, *args):
        """``fn(*args)``'s result, or :class:`Busy` after :attr:`seconds`."""
        future = self._worker.submit(fn, *args)
        try:
            return future.result(timeout=self.seconds)
        except Timeout:
            future.cancel()
            raise Busy(
                f"busy: no answer within {self.seconds:g} s (other requests or a slow model); try again"
            ) from None


@dataclass
class Loaded:
    """A model ready for the page: the eval-mode model, its class names and what the page says about it."""

    model: nn.Module
    names: tuple[str, ...] | None
    note: str


@functools.lru_cache(maxsize=4)
def load_model(name: str, checkpoint: str = "") -> Loaded:
    """The model of a selection, loaded once: ``checkpoint`` (a training checkpoint, or a release file read
    as zoo/timm model ``name``); without one, a zoo ``name`` whose release file is in the download cache,
    else ``name`` with untrained predictors (and weights).

    Args:
        name: a timm or zoo model name (may be empty with a training checkpoint).
        checkpoint: a file path, or empty.

    Returns:
        The :class:`Loaded` model.
    """
    if checkpoint:
        model, cfg = load_trained(checkpoint, **({"model": name} if name else {}))
        names = class_names(getattr(model, "num_classes", 0), cfg.data.dataset)
        return Loaded(model.eval(), names, f"trained checkpoint {Path(checkpoint).name}")
    if not name:
        raise ValueError("give a model name or a checkpoint file")
    if name in ZOO and cache_path(name).is_file():
        model, _ = load_trained(cache_path(name), model=name)
        return Loaded(model, class_names(model.num_classes), f"{name}: the release's checkpoint")
    model = build_untrained(name)
    note = f"{name} with untrained predictors and weights: the kept tokens show the mechanics, not a trained choice"
    return Loaded(model, class_names(getattr(model, "num_classes", 0)), note)


def _set_budget(model: nn.Module, keep_rate: float, keep_mode: str) -> str:
    """Apply the page's budget; the threshold mode needs thresholds, calibrated here on random images when
    the model has none for this keep rate (said in the returned note)."""
    model.keep_mode = FIXED
    model.keep_rate = keep_rate
    if not KEEP_RULES[keep_mode].per_image:
        return ""
    model.keep_mode = keep_mode
    calibrate(model, random_images(model))
    return f"{keep_mode} keep mode calibrated to this keep rate on 32 random images"


def _latency_ms(model: nn.Module, x: torch.Tensor) -> float:
    """Median milliseconds of ``model(x)`` over 5 calls after one warm-up (:func:`time_callables`)."""
    return 1000 * time_callables({"model": model}, x, warmup=1, repeats=5)["model"]


def run_image(loaded: Loaded, image: str, keep_rate: float, keep_mode: str, out: str) -> dict:
    """One image through the selected model at the page's budget: the kept-token picture written to ``out``
    and the figures shown beside it.

    Args:
        loaded: the selected model.
        image: the uploaded file's path.
        keep_rate: the slider's keep rate.
        keep_mode: a keep rule that needs no training (:func:`dynamicvit.core.keep.untrained_rules`).
        out: where to write the picture (PNG).

    Returns:
        ``kept_tokens`` per stage, ``top_classes`` (name, probability), ``gmacs``, ``latency_ms`` at this budget and
        ``dense_latency_ms`` with every token kept, and ``notes``.
    """
    model = loaded.model
    notes = [loaded.note, _set_budget(model, keep_rate, keep_mode)]
    row = visualize_files(model, [image], out, class_names=loaded.names, top=5)[0]
    x = row.pop("input")[None]
    latency = _latency_ms(model, x)
    # a per-image mode's cost follows this image's own counts, which visualize_files reported
    gmacs = (
        per_image_gmacs(model, [tuple(row["kept_tokens"])])[0]
        if KEEP_RULES[keep_mode].per_image
        else count_flops(model).gmacs
    )
    model.keep_mode, model.keep_rate = FIXED, 1.0
    dense_latency = _latency_ms(model, x)
    return {**row, "gmacs": gmacs, "latency_ms": latency, "dense_latency_ms": dense_latency, "notes": notes}


def _describe(r: dict) -> str:
    kept = " / ".join(map(str, r["kept_tokens"]))
    lines = [
        f"**kept tokens per stage: {kept}**",
        "",
        f"{r['gmacs']:.3f} GMACs; {r['latency_ms']:.1f} ms (every token kept: {r['dense_latency_ms']:.1f} ms)",
        "",
        "| class | probability |",
        "|---|---|",
        *[f"| {name} | {p:.3f} |" for name, p in r["top_classes"]],
        "",
        *[f"*{n}*" for n in r["notes"] if n],
    ]
    return "\n".join(lines)


DEFAULT_MODEL = "deit_small_patch16_224"


def saved_config(checkpoint: str) -> dict:
    """The run configuration a training checkpoint carries (``{}`` for a release file, a missing path or
    an unreadable file: the page then says what is wrong when it loads the model)."""
    if not checkpoint or not Path(checkpoint).is_file():
        return {}
    try:
        state = read_checkpoint(checkpoint)
    except USER_ERRORS:
        return {}
    config = state.get("config") if isinstance(state, dict) else None
    return config if isinstance(config, dict) else {}


def page_model(model: str | None, checkpoint: str) -> str:
    """What the page's model box starts with: the model named, else the training checkpoint's own
    architecture, else (no checkpoint) :data:`DEFAULT_MODEL`; empty for a release file, whose zoo name
    the user types."""
    if model:
        return model
    if checkpoint:
        return str(saved_config(checkpoint).get("model", ""))
    return DEFAULT_MODEL


def _examples(folder: Path, config: dict | None = None) -> list[str]:
    """Example pictures written to ``folder`` that fit the model: demo canvases (of the checkpoint's canvas
    size) for a model trained on cluttered Fashion-MNIST, scikit-image's photos otherwise; those available."""
    from PIL import Image

    config = config or {}
    canvases_only = str(config.get("data", "")).startswith("cluttered")
    pictures = {}
    try:
        from skimage import data

        if not canvases_only:
            pictures.update({"cat": data.chelsea(), "coffee": data.coffee(), "astronaut": data.astronaut()})
    except ImportError:
        pass
    try:
        from dynamicvit.data.cluttered import ClutteredFashionMNIST

        options = {"canvas": config.get("canvas") or 48, "distractors": config.get("distractors", 2)}
        canvases = ClutteredFashionMNIST("test", data_dir=config.get("data_dir"), **options)
        pictures.update({f"canvas-{i}": canvases.render(i)[0] for i in range(4 if canvases_only else 2)})
    except (OSError, ValueError, TypeError):  # no Fashion-MNIST files here
        pass
    paths = []
    for name, array in pictures.items():
        with atomic_write(folder / f"{name}.png") as tmp:
            Image.fromarray(array).save(tmp, format="PNG")
        paths.append(str(folder / f"{name}.png"))
    return paths


def build_app(
    default_model: str | None = None,
    default_checkpoint: str = "",
    queue_size: int = QUEUE_SIZE,
    request_seconds: float = REQUEST_SECONDS,
):
    """The Gradio page (a ``gradio.Blocks``), not yet launched.

    Longer than 60 lines on purpose: the page's layout reads top to bottom, one Gradio widget per line, and its
    two callbacks are closures over the page's picture folder and time limit.

    Args:
        default_model: the model name the page starts with (default: :func:`page_model`'s choice: a
            training checkpoint's own model, else :data:`DEFAULT_MODEL`).
        default_checkpoint: the checkpoint path it starts with.
        queue_size: requests that may wait behind the running one.
        request_seconds: a request's longest wait for its answer (:class:`TimeLimit`).

    Returns:
        The ``gradio.Blocks`` app.
    """
    try:
        import gradio as gr
    except ImportError as e:
        raise ImportError(f"the app needs Gradio ({e}); install it with: pip install 'dynamicvit[app]'") from None

    folder = Path(tempfile.mkdtemp(prefix="dynamicvit-app-"))
    limit = TimeLimit(request_seconds)

    def answer(file, keep_rate, keep_mode, name, checkpoint):
        loaded = load_model(name.strip(), checkpoint.strip())
        out = folder / f"kept-{time.monotonic_ns()}.png"
        return str(out), _describe(run_image(loaded, file, float(keep_rate), keep_mode, str(out)))

    def predict(file, keep_rate, keep_mode, name, checkpoint):
        if file is None:
            return None, "upload an image"
        try:
            return limit(answer, file, keep_rate, keep_mode, name, checkpoint)
        except Busy as e:
            return None, f"**{e}**"
        except USER_ERRORS as e:  # shown on the page; the server keeps running
            return None, f"**error:** {e}"

    with gr.Blocks(title="dynamicvit: what the model keeps") as app:
        gr.Markdown("# What the model keeps\nUpload an image and move the keep rate.")
        with gr.Row():
            name = gr.Textbox(
                page_model(default_model, default_checkpoint),
                label="model (timm or zoo name; a training checkpoint brings its own)",
                elem_id="model",
            )
            checkpoint = gr.Textbox(default_checkpoint, label="checkpoint file (optional)", elem_id="checkpoint")
        with gr.Row():
            keep_rate = gr.Slider(0.1, 1.0, value=0.7, step=0.05, label="keep rate", elem_id="keep-rate")
            keep_mode = gr.Radio(list(untrained_rules()), value=FIXED, label="keep mode", elem_id="keep-mode")
        upload = gr.File(label="image", type="filepath", elem_id="upload")
        examples = _examples(folder, saved_config(default_checkpoint))
        if examples:
            gr.Examples([[p] for p in examples], inputs=[upload], label="examples")
        with gr.Row():
            picture = gr.Image(label="kept tokens per stage", type="filepath", elem_id="picture")
            info = gr.Markdown(elem_id="info")
        inputs = [upload, keep_rate, keep_mode, name, checkpoint]
        for trigger in (upload.change, keep_rate.change, keep_mode.change):  # the latest request wins
            trigger(
                predict,
                inputs,
                [picture, info],
                concurrency_limit=1,
                concurrency_id="model",
                trigger_mode="always_last",
            )
    return app.queue(max_size=queue_size)


def launch(
    model: str | None,
    checkpoint: str,
    host: str,
    port: int,
    queue_size: int = QUEUE_SIZE,
    request_seconds: float = REQUEST_SECONDS,
) -> None:
    """Serve the page on ``host:port`` until interrupted (127.0.0.1 by default: this machine only)."""
    app = build_app(model, checkpoint, queue_size, request_seconds)
    app.launch(server_name=host, server_port=port, show_error=False)
