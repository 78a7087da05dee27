"""Evaluating a run: the model of a training checkpoint rebuilt from its saved config, on the test set that
config describes (an encoder scored by k-NN against the run's training images)."""

from __future__ import annotations

import os

from torch import nn
from torch.utils.data import Dataset

from dynamicvit.builder.data import build_run_dataset
from dynamicvit.builder.models import load_trained
from dynamicvit.config import RunConfig
from dynamicvit.core.losses import is_encoder
from dynamicvit.core.predictor import random_selector
from dynamicvit.tasks.evaluate import evaluate

__all__ = ["evaluate_checkpoint", "evaluate_run", "load_for_eval"]


def evaluate_checkpoint(path: str | os.PathLike, random_tokens: bool = False, ema: bool = True, **overrides) -> dict:
    """Rebuild the model of a training checkpoint (its saved config, ``overrides`` on top; its EMA
    weights when it has them, unless ``ema=False``) and evaluate it.

    ``random_tokens`` keeps the same counts but chooses the tokens uniformly at random.
    """
    return evaluate_run(*load_for_eval(path, ema=ema, **overrides), random_tokens=random_tokens)


def evaluate_run(model: nn.Module, dataset: Dataset, cfg: RunConfig, random_tokens: bool = False) -> dict:
    """:func:`~dynamicvit.tasks.evaluate.evaluate` of a run's model on its test set (what :func:`load_for_eval`
    returns): an encoder is scored by k-NN against the run's training images; ``random_tokens`` chooses the
    kept tokens at random."""
    reference = build_run_dataset(cfg, "train") if is_encoder(model) else None
    return evaluate(
        model, dataset, cfg, decisions_fn=random_selector(cfg.run.seed) if random_tokens else None, reference=reference
    )


def load_for_eval(path: str | os.PathLike, ema: bool = True, **overrides) -> tuple[nn.Module, Dataset, RunConfig]:
    """:func:`~dynamicvit.builder.models.load_trained` plus the test set its config describes."""
    model, cfg = load_trained(path, ema=ema, **overrides)
    return model, build_run_dataset(cfg, "test"), cfg
