"""Throughput of dense vs sparse models, timed in one process and reported as ratios.

Besides the dense model and the sparse one, the bench times the *limit*: the same
backbone run on the same kept-token counts with no predictor and no gather (the tokens
are simply sliced). ``sparse / limit`` says how much of the possible speed-up the
implementation delivers. ``limit+predictors`` also computes the predictors' scores (and
discards them): the share of the gap that is the predictors' own arithmetic rather than
token selection.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import random
import statistics
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from dynamicvit.core.attention import fused_masked_attention
from dynamicvit.core.calibrate import calibrate
from dynamicvit.core.flops import count_flops, counts_per_image, input_size, per_image_gmacs, per_image_report
from dynamicvit.core.interfaces import backbone_of
from dynamicvit.models.factory import create_pair
from dynamicvit.models.vit import DynamicViTMixin
from dynamicvit.tools.bench_forwards import limit_forward, padded_forward
from dynamicvit.train.build import load_trained

__all__ = [
    "bench_device",
    "benchmark",
    "device_name",
    "peak_memory_mb",
    "sliced_forward",
    "time_callables",
    "time_runs",
]


def sliced_forward(model: nn.Module, score: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """The *limit* of a sparse model (:func:`limit_forward`): the token budget without its cost.
    With ``score`` the predictors still score the patch tokens at each stage (scores unused)."""
    return lambda x: limit_forward(model, x, score=score)


def bench_device(device: str | None = None) -> torch.device:
    """The device to time on: ``device``, else the GPU when there is one, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        found = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r} is no torch device (cpu, cuda, cuda:1, ...)") from None
    if found.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: torch sees no CUDA device here")
    return found


def device_name(device: torch.device) -> str:
    """``cpu``, or the GPU's name (``NVIDIA H200``)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def time_runs(
    fns: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    x: torch.Tensor,
    warmup: int = 3,
    repeats: int = 10,
    grad: bool = False,
) -> dict[str, list[float]]:
    """Seconds of every call of each function, interleaved in a shuffled order per round so
    that drift and cache effects of the previous call hit all alike; under ``inference_mode`` unless
    ``grad`` (training steps)."""
    with contextlib.nullcontext() if grad else torch.inference_mode():
        return _time_runs(fns, x, warmup, repeats)


def _time_runs(fns, x: torch.Tensor, warmup: int, repeats: int) -> dict[str, list[float]]:
    for _ in range(warmup):
        for fn in fns.values():
            fn(x)
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = random.Random(0)
    names = list(fns)
    for _ in range(repeats):
        order.shuffle(names)
        for name in names:
            times[name].append(_seconds(fns[name], x))
    return times


def _seconds(fn: Callable[[torch.Tensor], object], x: torch.Tensor) -> float:
    """Seconds of one call: on a GPU between CUDA events recorded on the current stream around the call
    (the kernels' time, host launch overhead included), else the wall clock."""
    if not x.is_cuda:
        start = time.perf_counter()
        fn(x)
        return time.perf_counter() - start
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(x.device)
    begin.record()
    fn(x)
    end.record()
    end.synchronize()
    return begin.elapsed_time(end) / 1000.0


def time_callables(
    fns: dict[str, Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor, warmup: int = 3, repeats: int = 10
) -> dict[str, float]:
    """Median seconds per call of each function (see :func:`time_runs`)."""
    return {name: statistics.median(t) for name, t in time_runs(fns, x, warmup, repeats).items()}


class _LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of tensors created by ops and still alive, for CPU runs (no allocator stats there)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._owned: set[int] = set()

    def _free(self, ptr: int, nbytes: int) -> None:
        self._owned.discard(ptr)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in self._owned:
                ptr, nbytes = t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()
                self._owned.add(ptr)
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._free, ptr, nbytes)
        return out


@torch.inference_mode()
def peak_memory_mb(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    """Peak memory of one call in MB: the CUDA allocator's peak, or on CPU the peak of live tensors
    the call created (activations; weights and the input are not counted)."""
    return _peak_mb(fn, x)


def _peak_mb(fn: Callable[[torch.Tensor], object], x: torch.Tensor) -> float:
    if x.is_cuda:
        torch.cuda.reset_peak_memory_stats(x.device)
        base = torch.cuda.memory_allocated(x.device)
        fn(x)
        return (torch.cuda.max_memory_allocated(x.device) - base) / 2**20
    with _LiveTensorBytes() as counter:
        fn(x)
    return counter.peak / 2**20


def _onnx_runner(model: nn.Module, path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    from dynamicvit.tools.export import export_onnx, onnx_session

    export_onnx(model, path, check=False)
    session = onnx_session(path)
    return lambda x: session.run(None, {"images": x.numpy()})[0]


NOISE_LIMIT = 1.5  # p90 / p50 above which a row's timings are noise-bound


def _row(times: list[float], batch: int, dense: list[float]) -> dict:
    """img/s, speed-up over dense, latency percentiles and whether the timings were noisy (p90 over
    :data:`NOISE_LIMIT` × p50: something else competed for the cores)."""
    median = statistics.median(times)
    q = statistics.quantiles(times, n=100, method="inclusive") if len(times) > 1 else [times[0]] * 99
    return {
        "img_per_s": batch / median,
        "speedup": statistics.median(dense) / median,
        "latency_ms": {"p50": 1e3 * median, "p90": 1e3 * q[89], "p99": 1e3 * q[98]},
        "noisy": q[89] > NOISE_LIMIT * median,
    }


def benchmark(
    model: str,
    keep_rate: float | None = None,
    batch_size: int = 32,
    img_size: int | None = None,
    warmup: int = 3,
    repeats: int = 10,
    compile: bool | str = False,
    onnx: bool = False,
    keep_mode: str = "fixed",
    device: str | None = None,
    **timm_kwargs,
) -> dict:
    """img/s of dense, sparse and the slicing limit for a timm or zoo model name (``keep_rate`` default:
    the zoo model's, else 0.7), ratios to dense;
    ``variants`` adds latency percentiles and peak memory of each, and with ``compile`` /
    ``onnx`` the ``torch.compile``d and onnxruntime versions of dense and sparse, all timed
    interleaved in one process. ``compile`` may name a ``torch.compile`` backend (default inductor).

    ``keep_mode="adaptive"`` adds the adaptive mode calibrated to the fixed mode's average counts (on
    64 other random images), run packed (``adaptive``) and padded (``adaptive padded``), and the
    per-image distribution of its kept tokens on the timed batch; for a ViT also the learned mode
    (``learned``: fresh budget predictors, their offsets calibrated the same way). ``device`` defaults to the GPU when
    there is one (timed with CUDA events), else the CPU.

    Longer than 60 lines on purpose: every variant must be built before the one interleaved timing loop
    and read back after it, so building, timing and reporting share one scope.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if img_size is not None:
        timm_kwargs["img_size"] = img_size
    run_on = bench_device(device)
    if onnx and run_on.type != "cpu":
        raise ValueError("--onnx times onnxruntime on the CPU: pass --device cpu")
    dense, sparse = (m.to(run_on) for m in create_pair(model, keep_rate=keep_rate, **timm_kwargs))
    chans, h, w = input_size(dense, img_size)
    x = torch.randn(batch_size, chans, h, w, device=run_on)
    fns = {"dense": dense, "sparse": sparse}
    if isinstance(sparse, DynamicViTMixin):  # asymmetric computation keeps every location: no slicing limit
        fns["limit"] = sliced_forward(sparse)
        fns["limit+predictors"] = sliced_forward(sparse, score=True)
    per_image = None
    if keep_mode == "adaptive":
        adaptive = copy.deepcopy(sparse)
        held_out = torch.randn(64, chans, h, w, generator=torch.Generator().manual_seed(1)).to(run_on)
        calibrate(adaptive, held_out)
        fns["adaptive"] = adaptive
        if isinstance(adaptive, DynamicViTMixin):
            fns["adaptive padded"] = functools.partial(padded_forward, adaptive)
            fns["learned"] = learned = copy.deepcopy(sparse)
            learned.keep_mode = "learned"  # fresh budget predictors, offsets calibrated to the same mean
            calibrate(learned, held_out)
        with torch.inference_mode():
            counts = counts_per_image(adaptive(x, return_decisions=True).decisions)
        per_image = per_image_report(counts, per_image_gmacs(adaptive, counts, (h, w)))
    peaks = {name: peak_memory_mb(fn, x) for name, fn in fns.items()}
    setup: dict[str, float] = {}
    if compile:
        for name in ("dense", "sparse"):
            backend = compile if isinstance(compile, str) else "inductor"
            fns[f"{name} compiled"] = torch.compile(fns[name], backend=backend)
            start = time.perf_counter()
            with torch.inference_mode():
                fns[f"{name} compiled"](x)
            setup[f"{name} compiled"] = time.perf_counter() - start
    if onnx:
        with tempfile.TemporaryDirectory() as tmp:
            for name in ("dense", "sparse"):
                fns[f"{name} onnx"] = _onnx_runner(fns[name], Path(tmp) / f"{name}.onnx")
    times = time_runs(fns, x, warmup, repeats)
    ips = {name: batch_size / statistics.median(t) for name, t in times.items()}
    variants = {name: _row(t, batch_size, times["dense"]) for name, t in times.items()}
    for name, row in variants.items():
        row["peak_mb"] = peaks.get(name)
        if name in setup:
            row["compile_seconds"] = setup[name]
    return {
        "model": model,
        "keep_rate": sparse.keep_rate,
        "batch_size": batch_size,
        "img_size": [h, w],
        "device": device_name(run_on),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "img_per_s": {k: ips[k] for k in ("dense", "sparse", "limit", "limit+predictors") if k in ips},
        "speedup": ips["sparse"] / ips["dense"],
        "limit_speedup": ips["limit"] / ips["dense"] if "limit" in ips else None,
        "fraction_of_limit": ips["sparse"] / ips["limit"] if "limit" in ips else None,
        "predictors_fraction_of_limit": ips["limit+predictors"] / ips["limit"] if "limit" in ips else None,
        "adaptive_fraction_of_fixed": ips["adaptive"] / ips["sparse"] if "adaptive" in ips else None,
        "padded_fraction_of_fixed": ips["adaptive padded"] / ips["sparse"] if "adaptive padded" in ips else None,
        "learned_fraction_of_fixed": ips["learned"] / ips["sparse"] if "learned" in ips else None,
        "per_image": per_image,
        "variants": variants,
    }


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
    from timm.optim import create_optimizer_v2

    from dynamicvit.core.losses import build_criterion
    from dynamicvit.weights.checkpoint import freeze_weights

    run_on = bench_device(device)
    dense, sparse = (m.to(run_on) for m in create_pair(model, keep_rate=keep_rate, **timm_kwargs))
    teacher = copy.deepcopy(dense).eval()
    frozen = copy.deepcopy(sparse)
    backbone = freeze_weights(frozen)
    chans, h, w = input_size(dense)
    x = torch.randn(batch_size, chans, h, w, generator=torch.Generator().manual_seed(0)).to(run_on)
    y = torch.randint(0, dense.num_classes, (batch_size,), generator=torch.Generator().manual_seed(1)).to(run_on)
    ce = torch.nn.CrossEntropyLoss()

    def step(net: nn.Module, loss_of: Callable[[nn.Module], torch.Tensor]) -> Callable[[torch.Tensor], None]:
        net.train()
        opt = create_optimizer_v2([p for p in net.parameters() if p.requires_grad], opt="adamw", lr=1e-6)

        def run(images: torch.Tensor) -> None:
            opt.zero_grad(set_to_none=True)
            loss_of(net).backward()
            opt.step()

        return run

    def distilled(net: nn.Module) -> Callable[[nn.Module], torch.Tensor]:
        criterion = build_criterion(net, teacher, ce, learned=True, ratio_weight=2.0)

        def loss(m: nn.Module) -> torch.Tensor:
            teacher_outputs = criterion.teacher_outputs(x)  # as the trainer does: before the student's forward
            return criterion(x, m(x, return_decisions=True), y, teacher_outputs)[0]

        return loss

    fns = {
        "dense": step(dense, lambda m: ce(m(x), y)),
        "fine-tune": step(sparse, distilled(sparse)),
    }
    if getattr(sparse, "shares_prefix", False):  # plain ViTs: --freeze-prefix, the layers before stage 1 frozen
        prefix = copy.deepcopy(sparse)
        prefix.freeze_prefix()
        fns["fine-tune, frozen prefix"] = step(prefix, distilled(prefix))
        unfused = copy.deepcopy(sparse)
        fns["fine-tune, unfused attention"] = _unfused(step(unfused, distilled(unfused)))
    fns["calibrate"] = step(frozen, distilled(frozen))
    with torch.enable_grad():
        peaks = {name: _peak_mb(fn, x) for name, fn in fns.items()}
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
