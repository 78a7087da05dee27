"""Per-image budgets set on held-out images so the average kept fraction meets a target: the adaptive keep
mode's thresholds, or the learned keep mode's budget offsets.

In the adaptive mode (:attr:`dynamicvit.core.interfaces.TokenReducer.keep_mode`) each image keeps, at each
stage, the tokens whose keep probability exceeds the stage's threshold. :func:`calibrate` picks the
thresholds stage after stage: with the earlier stages' thresholds set, it gathers the keep scores of
every token alive before stage ``s`` over the images and places the threshold so that, over all
images, the targeted fraction of the grid's tokens is kept (by default the fixed mode's own
counts: ``int(N·ρ^s)`` for ViTs, ``int(H·W·r)`` for ConvNeXt/Swin). Easy images then keep fewer tokens,
hard ones more, at the same average cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dynamicvit.core.flops import input_size
from dynamicvit.core.interfaces import find_reducer
from dynamicvit.core.keep import calibrated_rule

__all__ = ["MIN_CALIBRATION_IMAGES", "calibrate", "random_images"]

MIN_CALIBRATION_IMAGES = 8


def _batches(data: Dataset | torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    if isinstance(data, torch.Tensor):
        if data.dim() != 4:
            raise ValueError(f"calibration images must be a batch (N, C, H, W), got {tuple(data.shape)}")
        return list(data.split(batch_size))
    loader = DataLoader(data, batch_size=batch_size, collate_fn=getattr(data, "collate_fn", None))  # detection sets
    return [batch[0] if isinstance(batch, (list, tuple)) else batch for batch in loader]


def _run(model: nn.Module, reducer, batches: list[torch.Tensor]):
    """Per batch, (images, grid tokens, per-stage (scores, image ids) of the tokens alive before it, and in the
    learned mode per-stage (budget log-odds, alive tokens) per image)."""
    for x in batches:
        model(x)
        yield x.shape[0], reducer.last_tokens, reducer.last_keep_scores, getattr(reducer, "last_budgets", [])


@torch.inference_mode()
def calibrate(
    model: nn.Module,
    data: Dataset | torch.Tensor,
    targets: Sequence[float] | None = None,
    batch_size: int = 64,
) -> dict:
    """Set ``model``'s per-image budgets on ``data`` (a data set of (image, label) pairs or an image batch) so
    the average kept fraction of the grid's tokens after each stage is ``targets`` (default: the fixed mode's
    counts over the grid, so both modes cost the same on average). A model in the learned keep mode gets its
    budget predictors' offsets; any other is switched to the adaptive mode and gets its thresholds.

    Args:
        model: a reduced model whose method has an adaptive keep mode.
        data: held-out images (a data set or a batch); at least eight.
        targets: kept fraction per stage (default: the fixed mode's).
        batch_size: images per forward.

    Returns:
        ``mode``, ``thresholds`` (adaptive) or ``offsets`` (learned), ``targets``, ``reached`` and ``images``.
    """
    reducer = find_reducer(model)
    if reducer is None or not reducer.supports_adaptive:
        raise TypeError(f"{type(model).__name__} has no per-image keep mode to calibrate (DynamicViT models have)")
    count = len(data)
    if count < MIN_CALIBRATION_IMAGES:
        raise ValueError(f"calibration needs at least {MIN_CALIBRATION_IMAGES} images, got {count}")
    stages = len(reducer.keep_targets())
    if targets is not None and (len(targets) != stages or any(not 0 < t <= 1 for t in targets)):
        raise ValueError(f"targets must be {stages} kept fractions in (0, 1], got {list(targets)}")
    batches = _batches(data, batch_size)
    was_training = model.training
    model.eval()
    reducer.keep_mode = calibrated_rule(reducer.keep_rule).name
    rule = reducer.keep_rule.fitter(reducer)
    for stage in range(stages):  # a stage's choice depends on the earlier stages' settings only
        runs = list(_run(model, reducer, batches))
        if targets is None:  # the fixed mode's counts on this grid: the same average cost
            tokens = runs[0][1]
            targets = [c / tokens for c in reducer.token_counts(tokens)]
        rule.fit(stage, runs, round(targets[stage] * runs[0][1] * count))
    kept = [0.0] * stages
    for images, tokens, scores, budgets in _run(model, reducer, batches):
        for s in range(stages):
            kept[s] += rule.kept(s, images, scores, budgets) / tokens
    model.train(was_training)
    return {
        "mode": reducer.keep_mode,
        **rule.result(),
        "targets": targets,
        "reached": [k / count for k in kept],
        "images": count,
    }


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
