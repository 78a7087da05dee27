"""Evaluating any model (dense, reduced, segmenter, detector) through its task's contract."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from dynamicvit.tasks.logits import DecisionsFn
from dynamicvit.tasks.registry import task_of

__all__ = ["evaluate"]


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    dataset,
    cfg: Any = None,
    batch_size: int = 256,
    decisions_fn: DecisionsFn | None = None,
    reference: Dataset | None = None,
) -> dict:
    """The metrics of ``model`` in eval mode on ``dataset``, as its task defines them (top-1 and loss,
    mIoU, mAP), with GMACs, img/s and the tokens kept.

    ``cfg`` is the run's config (its ``workers``) or ``None``; ``decisions_fn(batch, num_tokens,
    counts)`` forces per-stage kept indices (e.g. random) on a model whose method accepts forced
    decisions. An encoder without classifier (``num_classes=0``) is scored by k-NN top-1 of its
    embeddings against ``reference`` (labelled images, e.g. the training set).
    """
    return task_of(model).evaluate(model, dataset, cfg, batch_size, decisions_fn, reference)
