"""The evaluation loop of models that output logits (classification, and segmentation per pixel): top-1,
loss, GMACs, img/s and the tokens kept, optionally with forced (e.g. random) token selections."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from dynamicvit.core.flops import count_flops, counts_per_image, per_image_gmacs, per_image_report
from dynamicvit.core.interfaces import TokenReducer, find_reducer
from dynamicvit.methods.registry import method_of

__all__ = ["BatchHook", "DecisionsFn", "evaluate_logits", "token_report"]

DecisionsFn = Callable[[int, int, list[int]], list[torch.Tensor]]
BatchHook = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]


def evaluate_logits(
    model: nn.Module,
    dataset,
    cfg: Any,
    batch_size: int,
    decisions_fn: DecisionsFn | None,
    on_batch: BatchHook | None = None,
) -> dict:
    """Top-1 (%), mean loss, GMACs, img/s and kept tokens of a model that outputs logits, in eval mode.

    Args:
        model: a dense or reduced model returning logits (N, classes[, H, W]).
        dataset: (image, label) pairs; label -1 marks an unlabelled image (speed, tokens, GMACs only).
        cfg: the run's config (its ``workers``), or ``None``.
        batch_size: images per forward.
        decisions_fn: ``(batch, num_tokens, counts) -> kept indices per stage`` forced on a model whose
            method accepts forced decisions (random tokens), or ``None``.
        on_batch: ``(pred, labels, logits)`` called on every batch (segmentation's confusion matrix).

    Returns:
        ``top1``, ``loss``, ``gmacs``, ``img_per_s``, ``images`` and, for a reduced model, ``kept_tokens``
        and ``per_image`` (token counts and GMACs per image).
    """
    reducer = find_reducer(model)
    adaptive = _check_forced(model, reducer, decisions_fn)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    counts: list[tuple[int, ...]] = []
    correct = total = 0
    loss_sum, compute = 0.0, 0.0
    for x, y in DataLoader(dataset, batch_size=batch_size, num_workers=cfg.run.workers if cfg else 0):
        x, y = x.to(device), y.to(device)
        start = time.perf_counter()
        logits = _forward(model, x, reducer, decisions_fn, counts if adaptive else None)
        compute += time.perf_counter() - start
        scored, truth = (logits[y >= 0], y[y >= 0]) if y.dim() == 1 else (logits, y)
        if truth.numel():
            loss_sum += float(nn.functional.cross_entropy(scored.float(), truth, reduction="sum"))
            correct += int((scored.argmax(1) == truth).sum())
            total += truth.numel()
        if on_batch is not None:
            on_batch(logits.argmax(1), y, logits)
    model.train(was_training)
    out = {
        "top1": 100.0 * correct / total if total else None,  # pixel accuracy for segmentation; None: no labels
        "loss": loss_sum / total if total else None,
        "gmacs": count_flops(model).gmacs,
        "img_per_s": len(dataset) / compute if compute else math.nan,
        "images": len(dataset),
    }
    return out | token_report(model, reducer, counts if adaptive else None, out["gmacs"])


def _check_forced(model: nn.Module, reducer: TokenReducer | None, decisions_fn: DecisionsFn | None) -> bool:
    """Refuse forced decisions the model cannot take; return whether it keeps an adaptive count per image."""
    method = method_of(model)
    if decisions_fn is not None and not (method and method.accepts_decisions):
        raise ValueError("forced token selection (e.g. random tokens) applies to DynamicViT models only")
    adaptive = reducer is not None and reducer.per_image
    if adaptive and decisions_fn is not None:
        raise ValueError("random tokens keep the fixed mode's counts; evaluate them with keep_mode 'fixed'")
    return adaptive


def _forward(
    model: nn.Module,
    x: torch.Tensor,
    reducer: TokenReducer | None,
    decisions_fn: DecisionsFn | None,
    counts: list[tuple[int, ...]] | None,
) -> torch.Tensor:
    """One batch's logits: with forced decisions, or recording per-image token counts into ``counts``."""
    if decisions_fn is not None:
        gh, gw = reducer.grid_for(tuple(x.shape[-2:]))
        return model(x, decisions=decisions_fn(x.shape[0], gh * gw, reducer.token_counts(gh * gw)))
    if counts is not None:
        result = model(x, return_decisions=True)
        counts.extend(counts_per_image(result.decisions))
        return result.logits
    return model(x)


def token_report(
    model: nn.Module, reducer: TokenReducer | None, counts: list[tuple[int, ...]] | None, gmacs: float
) -> dict:
    """Kept tokens per stage and the per-image report of a reduced ``model`` whose fixed-mode cost is
    ``gmacs``; ``counts``, each image's kept tokens per stage in a per-image keep mode (``None`` in the fixed
    mode), make ``gmacs`` the mean over the images. ``{}`` for a dense model."""
    if counts is not None:
        report = per_image_report(counts, per_image_gmacs(model, counts))
        kept = [round(d["mean"], 1) for d in report["tokens"].values()]
        return {"per_image": report, "gmacs": report["gmacs"]["mean"], "kept_tokens": kept}
    if reducer is None:
        return {}
    kept = reducer.token_counts(reducer.last_tokens)
    return {"kept_tokens": kept, "per_image": per_image_report([tuple(kept)], [gmacs])}
