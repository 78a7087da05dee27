"""Classification: a timm classifier (or an encoder without classifier, ``num_classes=0``), top-1 and
loss on labelled images, k-NN top-1 for an encoder's embeddings; and the evaluation loop over logits that
segmentation shares."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from dynamicvit.core.flops import count_flops, counts_per_image, per_image_gmacs, per_image_report
from dynamicvit.core.interfaces import find_reducer
from dynamicvit.core.losses import is_encoder
from dynamicvit.methods import method_of
from dynamicvit.tasks.base import Task

__all__ = ["ClassifyTask", "DecisionsFn", "embed", "evaluate_logits", "knn_top1"]

DecisionsFn = Callable[[int, int, list[int]], list[torch.Tensor]]
BatchHook = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]


class ClassifyTask(Task):
    """Image classification (and embeddings, for an encoder without classifier)."""

    name = "classify"
    help = "image classification (default)"
    fixed_input_size = False
    mixes_labels = True

    def build_dense(self, make, name, head_classes, input_size, **kwargs) -> nn.Module:
        return make(name, **kwargs)

    def evaluate(self, model, dataset, cfg, batch_size, decisions_fn, reference) -> dict:
        if is_encoder(model):  # embeddings: k-NN top-1 against the reference images
            return _evaluate_encoder(model, dataset, cfg, batch_size, reference)
        return evaluate_logits(model, dataset, cfg, batch_size, decisions_fn)


def evaluate_logits(
    model: nn.Module,
    dataset,
    cfg: Any,
    batch_size: int,
    decisions_fn: DecisionsFn | None,
    on_batch: BatchHook | None = None,
) -> dict:
    """Top-1 (%), mean loss, GMACs, img/s and kept tokens of a model that outputs logits, in eval mode.

    ``decisions_fn(batch, num_tokens, counts)`` forces per-stage kept indices (e.g. random) on a model whose
    method accepts forced decisions; ``on_batch(pred, labels, logits)`` sees every batch (segmentation's
    confusion matrix). Unlabelled images (label -1) count for speed, tokens and GMACs only.
    """
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
        scored, truth = logits, y
        if y.dim() == 1:
            scored, truth = logits[y >= 0], y[y >= 0]
        if truth.numel():
            loss_sum += float(nn.functional.cross_entropy(scored.float(), truth, reduction="sum"))
            correct += int((scored.argmax(1) == truth).sum())
            total += truth.numel()
        if on_batch is not None:
            on_batch(logits.argmax(1), y, logits)
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


def _evaluate_encoder(model: nn.Module, dataset, cfg: Any, batch_size: int, reference) -> dict:
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
