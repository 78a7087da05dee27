"""Thresholds for the adaptive keep mode, set on held-out images so the average kept fraction meets a
budget.

In the adaptive mode (:attr:`dynamicvit.core.interfaces.TokenReducer.keep_mode`) each image keeps, at each
stage, the tokens whose keep probability exceeds the stage's threshold. :func:`calibrate` picks the
thresholds stage after stage: with the earlier stages' thresholds set, it gathers the keep scores of
every token alive before stage ``s`` over the images and places the threshold so that, over all
images, the targeted fraction of the grid's tokens is kept (by default the fixed mode's own
counts: ``int(N·ρ^s)`` for ViTs, ``int(H·W·r)`` for ConvNeXt/Swin). Easy images then keep fewer tokens,
hard ones more, at the same average cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dynamicvit.core.flops import input_size
from dynamicvit.core.interfaces import find_reducer
from dynamicvit.core.predictor import threshold_keep

__all__ = ["MIN_CALIBRATION_IMAGES", "calibrate", "random_images"]

MIN_CALIBRATION_IMAGES = 8


def _batches(data: Dataset | torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    if isinstance(data, torch.Tensor):
        if data.dim() != 4:
            raise ValueError(f"calibration images must be a batch (N, C, H, W), got {tuple(data.shape)}")
        return list(data.split(batch_size))
    loader = DataLoader(data, batch_size=batch_size)
    return [batch[0] if isinstance(batch, (list, tuple)) else batch for batch in loader]


def _run(model: nn.Module, reducer, batches: list[torch.Tensor]):
    """Per batch, (images, grid tokens, per-stage (scores, image ids) of the tokens alive before it)."""
    for x in batches:
        model(x)
        yield x.shape[0], reducer.last_tokens, reducer.last_keep_scores


@torch.inference_mode()
def calibrate(
    model: nn.Module,
    data: Dataset | torch.Tensor,
    targets: Sequence[float] | None = None,
    batch_size: int = 64,
) -> dict:
    """Switch ``model`` to the adaptive keep mode and set its per-stage thresholds on ``data`` (a data
    set of (image, label) pairs or an image batch) so the average kept fraction of the grid's tokens
    after each stage is ``targets`` (default: the fixed mode's counts over the grid, so both modes cost
    the same on average). Returns the thresholds, the targets
    and the fractions reached on ``data``.

    Args:
        model: a reduced model whose method has an adaptive keep mode.
        data: held-out images (a data set or a batch); at least eight.
        targets: kept fraction per stage (default: the fixed mode's).
        batch_size: images per forward.

    Returns:
        ``thresholds``, ``targets``, ``reached`` and ``images``.
    """
    reducer = find_reducer(model)
    if reducer is None or not reducer.supports_adaptive:
        raise TypeError(f"{type(model).__name__} has no adaptive keep mode to calibrate (DynamicViT models have)")
    count = len(data)
    if count < MIN_CALIBRATION_IMAGES:
        raise ValueError(f"calibration needs at least {MIN_CALIBRATION_IMAGES} images, got {count}")
    stages = len(reducer.keep_targets())
    if targets is not None and (len(targets) != stages or any(not 0 < t <= 1 for t in targets)):
        raise ValueError(f"targets must be {stages} kept fractions in (0, 1], got {list(targets)}")
    batches = _batches(data, batch_size)
    was_training = model.training
    model.eval()
    reducer.keep_mode = "adaptive"
    thresholds = [0.5] * stages
    for stage in range(stages):  # a stage's scores depend on the earlier stages' thresholds only
        reducer.thresholds = thresholds
        runs = list(_run(model, reducer, batches))
        if targets is None:  # the fixed mode's counts on this grid: the same average cost
            tokens = runs[0][1]
            targets = [c / tokens for c in reducer.token_counts(tokens)]
        ranked = torch.cat([scores[stage][0].float() for _, _, scores in runs]).sort(descending=True).values
        k = min(max(round(targets[stage] * runs[0][1] * count), 1), ranked.numel())
        cut = float(ranked[k - 1]) if k == ranked.numel() else (float(ranked[k - 1]) + float(ranked[k])) / 2
        thresholds[stage] = min(max(1 / (1 + math.exp(-min(max(cut, -30.0), 30.0))), 1e-6), 1 - 1e-6)
    reducer.thresholds = thresholds
    kept = [0] * stages
    for images, tokens, scores in _run(model, reducer, batches):
        for s, (score, seg) in enumerate(scores):
            kept[s] += int(threshold_keep(score, seg, images, thresholds[s]).sum()) / tokens
    reached = [k / count for k in kept]
    model.train(was_training)
    return {"thresholds": thresholds, "targets": targets, "reached": reached, "images": count}


def random_images(model: nn.Module, count: int = 32, img_size: int | None = None) -> torch.Tensor:
    """A seeded batch of random images of ``model``'s input size: what an untrained model's thresholds are
    calibrated on when there are no real images (it shows the adaptive mode's mechanics, not a trained
    model's spread).

    Args:
        model: the model the images are for.
        count: how many images.
        img_size: the input resolution (default: the model's).

    Returns:
        A (count, C, H, W) batch, the same for every call.
    """
    return torch.randn(count, *input_size(model, img_size), generator=torch.Generator().manual_seed(0))
