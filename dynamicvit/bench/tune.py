"""Budgets set by measured latency: the keep rate that reaches a target speed-up (or time per batch) on
the machine this runs on.

FLOPs do not translate into time the same way on every device, so :func:`tune` times the dense model
and the sparse one at a grid of keep rates, interleaved in one process (:func:`dynamicvit.bench.throughput.time_runs`),
and picks the largest keep rate – the most accurate model – that meets the target.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch
from torch import nn

from dynamicvit.bench.timing import time_runs
from dynamicvit.builder import build_pair
from dynamicvit.core.flops import count_flops, input_size
from dynamicvit.core.predictor import check_keep_rate

__all__ = ["DEFAULT_RATES", "tune"]

DEFAULT_RATES = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)


def tune(
    model: str,
    target_speedup: float | None = None,
    target_ms: float | None = None,
    batch_size: int = 32,
    img_size: int | None = None,
    rates: tuple[float, ...] | None = None,
    warmup: int = 2,
    repeats: int = 5,
    **timm_kwargs: Any,
) -> dict:
    """The largest keep rate of ``rates`` whose measured speed-up over the dense model reaches
    ``target_speedup`` (or whose median time per batch is at most ``target_ms``), for a timm or zoo
    model name at ``batch_size``; returns it with the measured curve (keep rate, GMACs, img/s,
    speed-up, ms per batch). A target no rate reaches is a ``ValueError`` saying what was reached.
    ConvNeXt/Swin take keep rates above 0.4 (their ratios are ``[rho, rho-0.2, rho-0.4]``).

    Args:
        model: a timm or zoo model name.
        target_speedup: img/s over the dense model's to reach (give this or ``target_ms``).
        target_ms: milliseconds per batch to stay under.
        batch_size: images per timed batch.
        img_size: input resolution (default: the model's).
        rates: keep rates to try (default 0.9 down to 0.3).
        warmup: untimed runs per variant.
        repeats: timed runs per variant (interleaved).
        **timm_kwargs: passed to ``timm.create_model``.

    Returns:
        The chosen ``keep_rate`` with its GMACs, speed-up, ms per batch and the whole measured ``curve``.

    Raises:
        ValueError: no rate reaches the target (the message says what was reached).

    Over 60 lines only by this documentation of the public API; the body is 30.
    """
    _check_targets(target_speedup, target_ms, batch_size, repeats)
    grid = tuple(sorted({check_keep_rate(r) for r in rates or DEFAULT_RATES}, reverse=True))
    dense, sparse = build_pair(model, keep_rate=grid[0], img_size=img_size, model_kwargs=timm_kwargs)
    chans, h, w = input_size(dense, img_size)
    x = torch.randn(batch_size, chans, h, w, generator=torch.Generator().manual_seed(0))
    gmacs = _gmacs_per_rate(sparse, grid, (h, w), strict=rates is not None)
    curve, times = _measured_curve(dense, sparse, gmacs, x, warmup, repeats)
    meets = [
        p for p in curve if (p["speedup"] >= target_speedup if target_ms is None else p["ms_per_batch"] <= target_ms)
    ]
    if not meets:
        target = f"speed-up {target_speedup}x" if target_ms is None else f"{target_ms} ms per batch"
        raise ValueError(f"target {target} is out of reach for {model} at batch {batch_size} " + _reached(curve, times))
    best = meets[0]
    sparse.keep_rate = best["keep_rate"]
    return {
        "model": model,
        "batch_size": batch_size,
        "img_size": [h, w],
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "target_speedup": target_speedup,
        "target_ms": target_ms,
        "keep_rate": best["keep_rate"],
        "gmacs": best["gmacs"],
        "dense_gmacs": count_flops(dense, (h, w)).gmacs,
        "speedup": best["speedup"],
        "ms_per_batch": best["ms_per_batch"],
        "dense_ms_per_batch": 1e3 * times["dense"],
        "curve": curve,
    }


def _measured_curve(
    dense: nn.Module, sparse: nn.Module, gmacs: dict[float, float], x: torch.Tensor, warmup: int, repeats: int
) -> tuple[list[dict], dict[str, float]]:
    """The dense model and ``sparse`` at every keep rate of ``gmacs``, timed interleaved on ``x``: the curve's
    points (:func:`_point`) and the median seconds per batch by variant."""

    def at(rate: float):
        def run(images: torch.Tensor) -> torch.Tensor:
            sparse.keep_rate = rate
            return sparse(images)

        return run

    fns = {"dense": dense, **{f"{rate}": at(rate) for rate in gmacs}}
    times = {name: statistics.median(t) for name, t in time_runs(fns, x, warmup, repeats).items()}
    return [_point(rate, gmacs[rate], times["dense"], times[f"{rate}"], x.shape[0]) for rate in gmacs], times


def _check_targets(target_speedup: float | None, target_ms: float | None, batch_size: int, repeats: int) -> None:
    if (target_speedup is None) == (target_ms is None):
        raise ValueError("give exactly one target: target_speedup (e.g. 1.5) or target_ms (per batch)")
    if target_speedup is not None and target_speedup <= 0:
        raise ValueError(f"target_speedup must be positive, got {target_speedup}")
    if target_ms is not None and target_ms <= 0:
        raise ValueError(f"target_ms must be positive, got {target_ms}")
    if batch_size < 1 or repeats < 1:
        raise ValueError(f"batch_size and repeats must be at least 1, got {batch_size} and {repeats}")


def _gmacs_per_rate(sparse: nn.Module, grid: tuple[float, ...], size: tuple[int, int], strict: bool) -> dict:
    """GMACs of every keep rate of ``grid`` the model takes, before any timing (``strict``: refuse one it
    does not take; else skip it, as the default grid goes below what ConvNeXt/Swin take)."""
    gmacs = {}
    for rate in grid:
        try:
            sparse.keep_rate = rate
        except ValueError:
            if strict:
                raise
            continue
        gmacs[rate] = count_flops(sparse, size).gmacs
    return gmacs


def _reached(curve: list[dict], times: dict) -> str:
    """What the measured keep rates reached, for the out-of-reach error."""
    speedups = [p["speedup"] for p in curve]
    ms = [p["ms_per_batch"] for p in curve]
    return (
        f"on this machine: keep rates {curve[-1]['keep_rate']}-{curve[0]['keep_rate']} measured "
        f"{min(speedups):.2f}-{max(speedups):.2f}x the dense model "
        f"({min(ms):.0f}-{max(ms):.0f} ms per batch; dense {1e3 * times['dense']:.0f} ms)"
    )


def _point(rate: float, gmacs: float, dense_s: float, sparse_s: float, batch_size: int) -> dict:
    """One point of the measured curve."""
    return {
        "keep_rate": rate,
        "gmacs": gmacs,
        "img_per_s": batch_size / sparse_s,
        "speedup": dense_s / sparse_s,
        "ms_per_batch": 1e3 * sparse_s,
    }
