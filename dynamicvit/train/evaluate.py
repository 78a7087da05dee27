"""Evaluation of any model (dense, reduced, segmenter) on a data set: top-1 or mIoU, GMACs, img/s,
tokens kept; and the same for a training checkpoint rebuilt from its saved config."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from dynamicvit.core.flops import count_flops, counts_per_image, per_image_gmacs, per_image_report
from dynamicvit.core.interfaces import find_reducer
from dynamicvit.core.losses import is_encoder
from dynamicvit.methods import method_of, random_selector
from dynamicvit.tasks.detect import evaluate_detection
from dynamicvit.tasks.segment import confusion_matrix, miou
from dynamicvit.train.build import build_run_dataset, load_trained
from dynamicvit.train.config import TrainConfig

__all__ = ["embed", "evaluate", "evaluate_checkpoint", "knn_top1", "load_for_eval"]

DecisionsFn = Callable[[int, int, list[int]], list[torch.Tensor]]


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    dataset,
    cfg: TrainConfig | None = None,
    batch_size: int = 256,
    decisions_fn: DecisionsFn | None = None,
    reference: Dataset | None = None,
) -> dict:
    """Top-1 (%), mean loss, GMACs and img/s of ``model`` in eval mode on ``dataset``.

    ``decisions_fn(batch, num_tokens, counts)`` forces per-stage kept indices (e.g. random) on a
    model whose method accepts forced decisions. An encoder without classifier (``num_classes=0``) is
    scored by k-NN top-1 of its embeddings against ``reference`` (labelled images, e.g. the training set).
    """
    if is_encoder(model):  # embeddings: k-NN top-1 against the reference images
        return _evaluate_encoder(model, dataset, cfg, batch_size, reference)
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


KNN_K, KNN_TEMPERATURE, KNN_REFERENCE = 20, 0.07, 10_000


@torch.inference_mode()
def embed(model: nn.Module, dataset: Dataset, batch_size: int = 256, workers: int = 0) -> tuple[torch.Tensor, ...]:
    """L2-normalised embeddings (N, C) of an encoder on ``dataset``, its labels (N,) and the seconds spent."""
    device = next(model.parameters()).device
    feats, labels, seconds = [], [], 0.0
    for x, y in DataLoader(dataset, batch_size=batch_size, num_workers=workers):
        start = time.perf_counter()
        feats.append(nn.functional.normalize(model(x.to(device)).float(), dim=1).cpu())
        seconds += time.perf_counter() - start
        labels.append(torch.as_tensor(y))
    return torch.cat(feats), torch.cat(labels), torch.tensor(seconds)


def knn_top1(reference: tuple[torch.Tensor, torch.Tensor], query: tuple[torch.Tensor, torch.Tensor], k: int = KNN_K):
    """Top-1 (%) of a weighted k-NN classifier on cosine similarity (votes exp(sim / 0.07), as DINO's
    evaluation): ``reference`` and ``query`` are (normalised embeddings, labels)."""
    (ref, ref_y), (q, q_y) = reference, query
    classes = int(ref_y.max()) + 1
    correct = 0
    for start in range(0, len(q), 1024):
        sim, idx = (q[start : start + 1024] @ ref.T).topk(min(k, len(ref)), dim=1)
        votes = torch.zeros(len(sim), classes).scatter_add_(1, ref_y[idx], (sim / KNN_TEMPERATURE).exp())
        correct += int((votes.argmax(1) == q_y[start : start + 1024]).sum())
    return 100.0 * correct / len(q)


def _evaluate_encoder(model: nn.Module, dataset, cfg: TrainConfig | None, batch_size: int, reference) -> dict:
    was_training = model.training
    model.eval()
    workers = cfg.workers if cfg else 0
    query = embed(model, dataset, batch_size, workers)
    out = {"knn_top1": None, "img_per_s": len(dataset) / float(query[2]), "images": len(dataset)}
    if reference is not None and bool((query[1] >= 0).all()):
        subset = Subset(reference, range(min(len(reference), KNN_REFERENCE)))
        out["knn_top1"] = knn_top1(embed(model, subset, batch_size, workers)[:2], query[:2])
    out["gmacs"] = count_flops(model).gmacs
    reducer = find_reducer(model)
    if reducer is not None:
        out["kept_tokens"] = reducer.token_counts(reducer.last_tokens)
    model.train(was_training)
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
    reference = build_run_dataset(cfg, "train") if is_encoder(model) else None
    return evaluate(
        model, dataset, cfg, decisions_fn=random_selector(cfg.seed) if random_tokens else None, reference=reference
    )


def load_for_eval(path: str | os.PathLike, ema: bool = True, **overrides) -> tuple[nn.Module, Dataset, TrainConfig]:
    """:func:`dynamicvit.build.load_trained` plus the test set its config describes."""
    model, cfg = load_trained(path, ema=ema, **overrides)
    return model, build_run_dataset(cfg, "test"), cfg
