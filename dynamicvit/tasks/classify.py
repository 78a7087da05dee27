"""Classification: a timm classifier (or an encoder without classifier, ``num_classes=0``), top-1 and
loss on labelled images (:mod:`dynamicvit.tasks.logits`), k-NN top-1 for an encoder's embeddings."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from dynamicvit.core.flops import count_flops
from dynamicvit.core.interfaces import find_reducer
from dynamicvit.core.losses import is_encoder
from dynamicvit.tasks.base import Task
from dynamicvit.tasks.logits import evaluate_logits
from dynamicvit.tasks.registry import register_task

__all__ = ["ClassifyTask", "embed", "knn_top1"]


class ClassifyTask(Task):
    """Image classification (and embeddings, for an encoder without classifier)."""

    name = "classify"
    help = "image classification (default)"
    fixed_input_size = False
    mixes_labels = True
    shards_evaluation = True

    def build_dense(self, make, name, head_classes, input_size, **kwargs) -> nn.Module:
        return make(name, **kwargs)

    def evaluate(self, model, dataset, cfg, batch_size, decisions_fn, reference) -> dict:
        if is_encoder(model):  # embeddings: k-NN top-1 against the reference images
            return _evaluate_encoder(model, dataset, cfg, batch_size, reference)
        return evaluate_logits(model, dataset, cfg, batch_size, decisions_fn)


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
    workers = cfg.run.workers if cfg else 0
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


register_task(ClassifyTask())
