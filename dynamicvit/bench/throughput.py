"""Throughput of dense vs sparse models, timed in one process and reported as ratios.

Besides the dense model and the sparse one, the bench times the *limit*: the same
backbone run on the same kept-token counts with no predictor and no gather (the tokens
are simply sliced). ``sparse / limit`` says how much of the possible speed-up the
implementation delivers. ``limit+predictors`` also computes the predictors' scores (and
discards them): the share of the gap that is the predictors' own arithmetic rather than
token selection.
"""

from __future__ import annotations

import copy
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from dynamicvit.bench.forwards import limit_forward, padded_forward
from dynamicvit.bench.timing import bench_device, device_name, peak_mb, peak_memory_mb, time_runs, timing_row
from dynamicvit.builder import build_pair, load_trained
from dynamicvit.core.attention import fused_masked_attention
from dynamicvit.core.calibrate import calibrate
from dynamicvit.core.flops import count_flops, counts_per_image, input_size, per_image_gmacs, per_image_report
from dynamicvit.core.interfaces import backbone_of, find_reducer
from dynamicvit.core.keep import DEFAULT_KEEP_MODE, KEEP_RULES
from dynamicvit.methods.budget import knob_of
from dynamicvit.models.merged_drops import merges_drops
from dynamicvit.models.vit import DynamicViTMixin

__all__ = ["benchmark", "benchmark_checkpoints", "benchmark_training", "sliced_forward"]


def sliced_forward(model: nn.Module, score: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """The *limit* of a sparse model (:func:`limit_forward`): the token budget without its cost.
    With ``score`` the predictors still score the patch tokens at each stage (scores unused)."""
    return lambda x: limit_forward(model, x, score=score)


def _onnx_runner(model: nn.Module, path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    from dynamicvit.export import export_onnx, onnx_session

    export_onnx(model, path, check=False)
    session = onnx_session(path)
    return lambda x: session.run(None, {"images": x.numpy()})[0]


def benchmark(
    model: str,
    keep_rate: float | None = None,
    method: str = "dynamicvit",
    batch_size: int = 32,
    img_size: int | None = None,
    warmup: int = 3,
    repeats: int = 10,
    compile: bool | str = False,
    onnx: bool = False,
    keep_mode: str = DEFAULT_KEEP_MODE,
    device: str | None = None,
    **timm_kwargs,
) -> dict:
    """img/s of dense, sparse and the slicing limit for a timm or zoo model name (``keep_rate`` default: the zoo
    model's, else 0.7), ratios to dense, all timed interleaved in one process. ``method`` reduces the model
    another way (:func:`build_pair`: ToMe's and MCTF's ``r`` tuned to DynamicViT's MACs at ``keep_rate``); the
    limit and the merged and per-image variants are DynamicViT's. ``variants`` holds latency percentiles and
    peak memory of each (a plain ViT's also merging its dropped tokens, ``merged drops``), and with ``compile``
    (a ``torch.compile`` backend's name or ``True`` for inductor) / ``onnx`` of compiled and onnxruntime dense
    and sparse. A per-image ``keep_mode`` adds the per-image variants (:func:`_add_per_image`). ``device``
    defaults to the GPU when there is one (timed with CUDA events), else the CPU."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    run_on = bench_device(device)
    if onnx and run_on.type != "cpu":
        raise ValueError("--onnx times onnxruntime on the CPU: pass --device cpu")
    pair = build_pair(model, method, keep_rate, img_size, model_kwargs=timm_kwargs)
    dense, sparse = (m.to(run_on) for m in pair)
    chans, h, w = input_size(dense, img_size)
    x = torch.randn(batch_size, chans, h, w, device=run_on)
    fns = {"dense": dense, "sparse": sparse, **_dynamicvit_variants(sparse)}
    per_image = _add_per_image(fns, keep_mode, x) if KEEP_RULES.lookup(keep_mode).per_image else None
    peaks = {name: peak_memory_mb(fn, x) for name, fn in fns.items()}
    setup = _compile(fns, x, compile) if compile else {}
    with tempfile.TemporaryDirectory() as tmp:
        if onnx:
            fns.update(
                {f"{name} onnx": _onnx_runner(fns[name], Path(tmp) / f"{name}.onnx") for name in ("dense", "sparse")}
            )
        times = time_runs(fns, x, warmup, repeats)
    variants = {name: timing_row(t, batch_size, times["dense"]) for name, t in times.items()}
    for name, row in variants.items():
        row["peak_mb"] = peaks.get(name)
        if name in setup:
            row["compile_seconds"] = setup[name]
    knobs = {"keep_rate": getattr(sparse, "keep_rate", None), "knob": knob_of(sparse)}
    where = {"device": device_name(run_on), "threads": torch.get_num_threads(), "repeats": repeats}
    return {"model": model, "method": method, **knobs, "batch_size": batch_size, "img_size": [h, w], **where,
            **_ratios({name: batch_size / statistics.median(t) for name, t in times.items()}, keep_mode),
            "per_image": per_image, "variants": variants}  # fmt: skip


def _add_per_image(fns: dict, keep_mode: str, x: torch.Tensor) -> dict:
    """Add to ``fns`` every per-image keep rule ``fns["sparse"]`` supports, each calibrated to the fixed mode's
    mean counts on 64 other random images and run packed (under its name), and ``keep_mode`` also padded
    (``"<keep_mode> padded"``) on a ViT (a rule with modules to train, e.g. learned budgets, gets fresh ones).
    Returns the per-image distribution of ``keep_mode``'s kept tokens and MACs on ``x``."""
    held_out = torch.randn(64, *x.shape[1:], generator=torch.Generator().manual_seed(1)).to(x.device)
    fns.update(_per_image_variants(fns["sparse"], keep_mode, held_out))
    with torch.inference_mode():
        counts = counts_per_image(fns[keep_mode](x, return_decisions=True).decisions)
    return per_image_report(counts, per_image_gmacs(fns[keep_mode], counts, tuple(x.shape[-2:])))


def _dynamicvit_variants(sparse: nn.Module) -> dict:
    """The slicing limit (with and without the predictors' cost) and, when it merges its drops, the merged copy
    of a token-dropping DynamicViT; none for other methods or asymmetric computation (it keeps every
    location)."""
    if not isinstance(sparse, DynamicViTMixin):
        return {}
    fns = {"limit": sliced_forward(sparse), "limit+predictors": sliced_forward(sparse, score=True)}
    return fns | ({"merged drops": _merged_drops(sparse)} if merges_drops(sparse) else {})


def _compile(fns: dict, x: torch.Tensor, backend: bool | str) -> dict[str, float]:
    """Add ``torch.compile``d dense and sparse to ``fns`` (``backend`` a name, or ``True`` for inductor), each
    compiled by one forward of ``x``; returns the seconds that took per variant."""
    setup = {}
    for name in ("dense", "sparse"):
        fns[f"{name} compiled"] = torch.compile(fns[name], backend=backend if isinstance(backend, str) else "inductor")
        start = time.perf_counter()
        with torch.inference_mode():
            fns[f"{name} compiled"](x)
        setup[f"{name} compiled"] = time.perf_counter() - start
    return setup


def _ratios(ips: dict[str, float], keep_mode: str) -> dict:
    """The img/s of dense, sparse and the limit, and each variant's img/s as a ratio of the reference it is
    compared with (dense, the limit, the fixed mode); ``None`` for a variant not timed."""

    def ratio(name: str, reference: str) -> float | None:
        return ips[name] / ips[reference] if name in ips and reference in ips else None

    per_image = {f"{name}_fraction_of_fixed": ratio(name, "sparse") for name, r in KEEP_RULES.items() if r.per_image}
    return {
        "img_per_s": {k: ips[k] for k in ("dense", "sparse", "limit", "limit+predictors") if k in ips},
        "speedup": ratio("sparse", "dense"),
        "limit_speedup": ratio("limit", "dense"),
        "fraction_of_limit": ratio("sparse", "limit"),
        "predictors_fraction_of_limit": ratio("limit+predictors", "limit"),
        "merged_fraction_of_fixed": ratio("merged drops", "sparse"),
        **per_image,
        "padded_fraction_of_fixed": ratio(f"{keep_mode} padded", "sparse"),
    }


def _merged_drops(sparse: nn.Module) -> nn.Module:
    """A copy of ``sparse`` that merges the tokens it drops (``--merge-dropped``) instead of discarding them:
    the same kept counts, so its img/s over ``sparse``'s is the price of merging."""
    merged = copy.deepcopy(sparse)
    merged.merge_dropped = True
    return merged


def _per_image_variants(sparse: nn.Module, keep_mode: str, held_out: torch.Tensor) -> dict:
    """Copies of ``sparse`` in ``keep_mode`` and every other per-image keep rule it supports (a rule with modules
    to train gets fresh ones), each calibrated on ``held_out`` to the fixed mode's mean counts; for a ViT also
    ``keep_mode`` run padded (``"<keep_mode> padded"``). A ``keep_mode`` the model lacks is refused in one line
    by the reducer's :attr:`keep_mode` setter."""
    variants: dict = {}
    for name, rule in KEEP_RULES.items():
        if name == keep_mode or (rule.per_image and rule.supported_by(find_reducer(sparse))):
            variants[name] = copy.deepcopy(sparse)
            variants[name].keep_mode = name
            calibrate(variants[name], held_out)
    if isinstance(sparse, DynamicViTMixin):
        variants[f"{keep_mode} padded"] = functools.partial(padded_forward, variants[keep_mode])
    return variants


def benchmark_checkpoints(
    dense: str | Path,
    sparse: str | Path,
    batch_size: int = 32,
    warmup: int = 3,
    repeats: int = 10,
    device: str | None = None,
) -> dict:
    """img/s of two trained models – a dense one and its sparse fine-tune: classifiers, segmenters or
    detectors – and, for segmenters and detectors, of their backbones alone, all timed interleaved in one
    process on the models' input size (on ``device``, see :func:`bench_device`); MACs of each, ratios to
    the dense model."""
    if batch_size < 1 or repeats < 1:
        raise ValueError(f"batch_size and repeats must be >= 1, got {batch_size} and {repeats}")
    run_on = bench_device(device)
    models = {"dense": load_trained(dense)[0].to(run_on), "sparse": load_trained(sparse)[0].to(run_on)}
    chans, h, w = input_size(models["dense"])
    if input_size(models["sparse"]) != (chans, h, w):
        raise ValueError(f"the checkpoints take different inputs: {(chans, h, w)} vs {input_size(models['sparse'])}")
    fns: dict[str, Callable] = dict(models)
    macs = {name: count_flops(m, (h, w)).gmacs for name, m in models.items()}
    for name, m in models.items():
        if backbone_of(m) is not m:
            fns[f"{name} backbone"] = backbone_of(m)
            macs[f"{name} backbone"] = count_flops(backbone_of(m), (h, w)).gmacs
    x = torch.randn(batch_size, chans, h, w, generator=torch.Generator().manual_seed(0)).to(run_on)
    times = time_runs(fns, x, warmup, repeats)
    ips = {name: batch_size / statistics.median(t) for name, t in times.items()}
    speedups = {"sparse": ips["sparse"] / ips["dense"]}
    if "sparse backbone" in ips:
        speedups["sparse backbone"] = ips["sparse backbone"] / ips["dense backbone"]
    return {
        "checkpoints": [str(dense), str(sparse)],
        "batch_size": batch_size,
        "img_size": [h, w],
        "device": device_name(run_on),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "img_per_s": ips,
        "gmacs": macs,
        "speedup": speedups,
    }


def _unfused(run: Callable[[torch.Tensor], None]) -> Callable[[torch.Tensor], None]:
    """``run`` with the reference masked attention (:func:`~dynamicvit.core.attention.fused_masked_attention`)."""

    def unfused(images: torch.Tensor) -> None:
        with fused_masked_attention(False):
            run(images)

    return unfused


def benchmark_training(
    model: str,
    keep_rate: float = 0.7,
    batch_size: int = 16,
    warmup: int = 1,
    repeats: int = 5,
    device: str | None = None,
    **timm_kwargs,
) -> dict:
    """Seconds and peak memory of one training step (forward, loss, backward, AdamW update), interleaved
    in one process: the dense model with cross-entropy, DynamicViT fine-tuning (the paper's objective,
    backbone trainable), for plain ViTs the same with the layers before the first pruning stage frozen
    (``--freeze-prefix``: the teacher reuses them) and with the reference (unfused) masked attention
    instead of the fused one, and calibration (backbone frozen: only the new modules learn). ``device`` as
    in :func:`bench_device`."""
    from dynamicvit.weights.checkpoint import freeze_weights

    run_on = bench_device(device)
    img_size = timm_kwargs.pop("img_size", None)
    dense, sparse = (
        m.to(run_on) for m in build_pair(model, keep_rate=keep_rate, img_size=img_size, model_kwargs=timm_kwargs)
    )
    frozen = copy.deepcopy(sparse)
    backbone = freeze_weights(frozen)
    chans, h, w = input_size(dense)
    x = torch.randn(batch_size, chans, h, w, generator=torch.Generator().manual_seed(0)).to(run_on)
    y = torch.randint(0, dense.num_classes, (batch_size,), generator=torch.Generator().manual_seed(1)).to(run_on)
    ce = torch.nn.CrossEntropyLoss()
    distilled = functools.partial(_distilled, teacher=copy.deepcopy(dense).eval(), ce=ce, x=x, y=y)
    fns = {"dense": _step(dense, lambda m: ce(m(x), y)), "fine-tune": _step(sparse, distilled(sparse))}
    if getattr(sparse, "shares_prefix", False):  # plain ViTs: --freeze-prefix, the layers before stage 1 frozen
        prefix = copy.deepcopy(sparse)
        prefix.freeze_prefix()
        fns["fine-tune, frozen prefix"] = _step(prefix, distilled(prefix))
        unfused = copy.deepcopy(sparse)
        fns["fine-tune, unfused attention"] = _unfused(_step(unfused, distilled(unfused)))
    fns["calibrate"] = _step(frozen, distilled(frozen))
    with torch.enable_grad():
        peaks = {name: peak_mb(fn, x) for name, fn in fns.items()}
        times = {name: statistics.median(t) for name, t in time_runs(fns, x, warmup, repeats, grad=True).items()}
    return {
        "model": model,
        "keep_rate": keep_rate,
        "batch_size": batch_size,
        "device": device_name(run_on),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "frozen_weights": len(backbone),
        "seconds": times,
        "peak_mb": peaks,
        "time_vs_dense": {k: v / times["dense"] for k, v in times.items()},
        "memory_vs_dense": {k: v / peaks["dense"] for k, v in peaks.items()},
    }


def _step(net: nn.Module, loss_of: Callable[[nn.Module], torch.Tensor]) -> Callable[[torch.Tensor], None]:
    """One timed training step of ``net`` (train mode, AdamW over its trainable weights) on ``loss_of(net)``."""
    from timm.optim import create_optimizer_v2

    net.train()
    opt = create_optimizer_v2([p for p in net.parameters() if p.requires_grad], opt="adamw", lr=1e-6)

    def run(images: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss_of(net).backward()
        opt.step()

    return run


def _distilled(net: nn.Module, teacher: nn.Module, ce: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable:
    """The DynamicViT objective of ``net`` on the batch ``x``, ``y`` with ``teacher``, as the trainer computes it."""
    from dynamicvit.core.losses import build_criterion

    criterion = build_criterion(net, teacher, ce, learned=True, ratio_weight=2.0)

    def loss(m: nn.Module) -> torch.Tensor:
        teacher_outputs = criterion.teacher_outputs(x)  # as the trainer does: before the student's forward
        return criterion(x, m(x, return_decisions=True), y, teacher_outputs)[0]

    return loss
