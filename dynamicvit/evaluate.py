"""Evaluation of any model (dense, reduced, segmenter) on a data set: top-1 or mIoU, GMACs, img/s,
tokens kept; and the same for a training checkpoint rebuilt from its saved config."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .base import find_reducer
from .build import build_run_dataset, load_trained
from .config import TrainConfig
from .detect import evaluate_detection
from .flops import count_flops, counts_per_image, per_image_gmacs, per_image_report
from .methods import method_of, random_selector
from .segment import confusion_matrix, miou

__all__ = ["evaluate", "evaluate_checkpoint", "load_for_eval"]

DecisionsFn = Callable[[int, int, list[int]], list[torch.Tensor]]


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    dataset,
    cfg: TrainConfig | None = None,
    batch_size: int = 256,
    decisions_fn: DecisionsFn | None = None,
) -> dict:
    """Top-1 (%), mean loss, GMACs and img/s of ``model`` in eval mode on ``dataset``.

    ``decisions_fn(batch, num_tokens, counts)`` forces per-stage kept indices (e.g. random) on a
    model whose method accepts forced decisions.
    """
    if getattr(model, "takes_targets", False):  # a detector: COCO mAP
        if decisions_fn is not None:
            raise ValueError("forced token selection (e.g. random tokens) is evaluated on classifiers and segmenters")
        return _evaluate_detector(model, dataset, cfg, batch_size)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=cfg.workers if cfg else 0)
    method, reducer = method_of(model), find_reducer(model)
    if decisions_fn is not None and not (method and method.accepts_decisions):
        raise ValueError("forced token selection (e.g. random tokens) applies to DynamicViT models only")
    adaptive = reducer is not None and reducer.keep_mode == "adaptive"
    if adaptive and decisions_fn is not None:
        raise ValueError("random tokens keep the fixed mode's counts; evaluate them with keep_mode 'fixed'")
    counts: list[tuple[int, ...]] = []
    correct = total = 0
    loss_sum, compute = 0.0, 0.0
    confusion = None
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        start = time.perf_counter()
        if decisions_fn is not None:
            gh, gw = reducer.grid_for(tuple(x.shape[-2:]))
            logits = model(x, decisions=decisions_fn(x.shape[0], gh * gw, reducer.token_counts(gh * gw)))
        elif adaptive:
            result = model(x, return_decisions=True)
            logits = result.logits
            counts.extend(counts_per_image(result.decisions))
        else:
            logits = model(x)
        compute += time.perf_counter() - start
        pred = logits.argmax(1)
        scored, truth = logits, y
        if y.dim() == 1:  # unlabelled images (label -1) count for speed, tokens and GMACs only
            scored, truth = logits[y >= 0], y[y >= 0]
        if truth.numel():
            loss_sum += float(nn.functional.cross_entropy(scored.float(), truth, reduction="sum"))
            correct += int((scored.argmax(1) == truth).sum())
            total += truth.numel()
        if y.dim() == 3:  # segmentation: per-pixel labels
            counts = confusion_matrix(pred, y, logits.shape[1])
            confusion = counts if confusion is None else confusion + counts
    model.train(was_training)
    images = len(dataset)
    flops = count_flops(model)
    out = {
        "top1": 100.0 * correct / total if total else None,  # pixel accuracy for segmentation; None: no labels
        "loss": loss_sum / total if total else None,
        "gmacs": flops.gmacs,
        "img_per_s": images / compute if compute else math.nan,
        "images": images,
    }
    if confusion is not None:
        out["miou"] = miou(confusion)
        out["backbone_gmacs"] = count_flops(model.backbone, img_size=tuple(dataset[0][0].shape[-2:])).gmacs
    if adaptive:
        gmacs = per_image_gmacs(model, counts)
        out["per_image"] = per_image_report(counts, gmacs)
        out["gmacs"] = out["per_image"]["gmacs"]["mean"]
        out["kept_tokens"] = [round(d["mean"], 1) for d in out["per_image"]["tokens"].values()]
    elif reducer is not None:
        out["kept_tokens"] = reducer.token_counts(reducer.last_tokens)
        out["per_image"] = per_image_report([tuple(out["kept_tokens"])], [flops.gmacs])
    return out


def _evaluate_detector(model: nn.Module, dataset, cfg: TrainConfig | None, batch_size: int) -> dict:
    """mAP/AP50 (pycocotools), img/s of the detector and of its backbone, GMACs of both, kept locations."""
    size = tuple(dataset[0][0].shape[-2:])
    out = evaluate_detection(model, dataset, batch_size=batch_size, workers=cfg.workers if cfg else 0)
    out["gmacs"] = count_flops(model, img_size=size).gmacs
    out["backbone_gmacs"] = count_flops(model.backbone, img_size=size).gmacs
    reducer = find_reducer(model)
    if reducer is not None:
        out["kept_tokens"] = reducer.token_counts(reducer.last_tokens)
    return out


def evaluate_checkpoint(path: str | os.PathLike, random_tokens: bool = False, ema: bool = True, **overrides) -> dict:
    """Rebuild the model of a training checkpoint (its saved config, ``overrides`` on top; its EMA
    weights when it has them, unless ``ema=False``) and evaluate it.

    ``random_tokens`` keeps the same counts but chooses the tokens uniformly at random.
    """
    model, dataset, cfg = load_for_eval(path, ema=ema, **overrides)
    return evaluate(model, dataset, cfg, decisions_fn=random_selector(cfg.seed) if random_tokens else None)


def load_for_eval(path: str | os.PathLike, ema: bool = True, **overrides) -> tuple[nn.Module, Dataset, TrainConfig]:
    """:func:`dynamicvit.build.load_trained` plus the test set its config describes."""
    model, cfg = load_trained(path, ema=ema, **overrides)
    return model, build_run_dataset(cfg, "test"), cfg
