"""Throughput of dense vs sparse models, timed in one process and reported as ratios.

Besides the dense model and the sparse one, the bench times the *limit*: the same
backbone run on the same kept-token counts with no predictor and no gather (the tokens
are simply sliced). ``sparse / limit`` says how much of the possible speed-up the
implementation delivers.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from .models import create_pair
from .vit import in_channels

__all__ = ["time_callables", "sliced_forward", "benchmark"]


def sliced_forward(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The sparse model's token budget without its cost: slice tokens, no predictor, no gather."""

    def run(x: torch.Tensor) -> torch.Tensor:
        x = model._embed(x)
        prefix = model.num_prefix_tokens
        counts = model.keep_counts(x.shape[1] - prefix)
        stage_of = model.stage_of_block
        for i, blk in enumerate(model.blocks):
            if i in stage_of:
                x = x[:, : prefix + counts[stage_of[i]]]
            x = blk(x)
        return model.forward_head(model.norm(x))

    return run


@torch.inference_mode()
def time_callables(
    fns: dict[str, Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor, warmup: int = 3, repeats: int = 10
) -> dict[str, float]:
    """Median seconds per call of each function, interleaved in a shuffled order per round so
    that drift and cache effects of the previous call hit all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn(x)
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = random.Random(0)
    names = list(fns)
    for _ in range(repeats):
        order.shuffle(names)
        for name in names:
            fn = fns[name]
            start = time.perf_counter()
            fn(x)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def benchmark(
    model: str,
    keep_rate: float = 0.7,
    batch_size: int = 32,
    img_size: int | None = None,
    warmup: int = 3,
    repeats: int = 10,
    **timm_kwargs,
) -> dict:
    """img/s of dense, sparse and the slicing limit for a timm model name; ratios to dense."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if img_size is not None:
        timm_kwargs["img_size"] = img_size
    dense, sparse = create_pair(model, keep_rate=keep_rate, **timm_kwargs)
    h, w = dense.patch_embed.img_size
    x = torch.randn(batch_size, in_channels(dense), h, w)
    secs = time_callables({"dense": dense, "sparse": sparse, "limit": sliced_forward(sparse)}, x, warmup, repeats)
    ips = {name: batch_size / s for name, s in secs.items()}
    return {
        "model": model,
        "keep_rate": keep_rate,
        "batch_size": batch_size,
        "img_size": [h, w],
        "threads": torch.get_num_threads(),
        "img_per_s": ips,
        "speedup": ips["sparse"] / ips["dense"],
        "limit_speedup": ips["limit"] / ips["dense"],
        "fraction_of_limit": ips["sparse"] / ips["limit"],
    }
