"""Keep schedules searched for a MACs target: instead of the paper's ρ, ρ², ρ³, the per-stage fractions of
a trained model that give the best held-out accuracy at the same MACs.

A local search on labelled held-out images: start at the ρ schedule that meets the target
(:func:`~dynamicvit.methods.set_budget`), then repeatedly move tokens from one stage to another – keep
more at stage ``i``, and at stage ``j`` the fewest that bring the MACs back to the target – and take a move
when it raises the held-out accuracy. Training-free: it reads a trained model's predictors as they are.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from dynamicvit.core.flops import count_flops
from dynamicvit.core.interfaces import find_reducer
from dynamicvit.methods.budget import set_budget

__all__ = ["search_schedule"]


def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 256) -> float:
    with torch.inference_mode():
        hits = sum(
            (model(images[i : i + batch]).argmax(-1) == labels[i : i + batch]).sum().item()
            for i in range(0, len(images), batch)
        )
    return 100.0 * hits / len(images)


def _rebalanced(model: nn.Module, reducer, schedule: list[float], i: int, j: int, step: float, budget: float):
    """``schedule`` with ``step`` more kept at stage ``i`` and stage ``j`` lowered (bisection) to the largest
    fraction whose MACs stay within ``budget``; ``None`` when no non-increasing schedule does it."""
    trial = list(schedule)
    trial[i] = min(1.0, trial[i] + step)
    if any(b > a for a, b in itertools.pairwise(trial)):
        return None

    def fits(fraction: float) -> bool:
        trial[j] = fraction
        reducer.keep_schedule = trial
        return count_flops(model).total <= budget

    low, high = (trial[j + 1] if j + 1 < len(trial) else 1e-3), trial[j]
    if not fits(low):
        return None
    for _ in range(10):
        mid = (low + high) / 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    fits(low)
    return list(trial) if trial != schedule else None


def search_schedule(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    target: float,
    dense_macs: int,
    step: float = 0.05,
    rounds: int = 4,
) -> dict:
    """Search the per-stage keep fractions of ``model`` for the MACs ``target`` and set the best.

    Args:
        model: a trained reduced ViT (eval mode; its reducer has ``keep_schedule``).
        images: held-out images (not the test set).
        labels: their labels.
        target: the fraction of ``dense_macs`` to meet.
        dense_macs: the dense model's MACs (:func:`~dynamicvit.core.flops.count_flops`).
        step: how much of the input one move shifts to a stage.
        rounds: passes over every (stage, stage) move.

    Returns:
        ``{"start": (schedule, accuracy), "best": (schedule, accuracy), "macs_fraction": ...}``.
    """
    reducer = find_reducer(model)
    if reducer is None or not hasattr(reducer, "keep_schedule"):
        raise ValueError(f"{type(model).__name__} has no keep schedule to search")
    model.eval()
    set_budget(model, target, dense_macs)
    best = reducer.keep_schedule
    budget = count_flops(model).total  # the ρ schedule's MACs: every move must stay within them
    best_acc = start_acc = _accuracy(model, images, labels)
    start = list(best)
    stages = range(len(best))
    for _ in range(rounds):
        improved = False
        for i, j in itertools.permutations(stages, 2):
            trial = _rebalanced(model, reducer, best, i, j, step, budget)
            if trial is None:
                continue
            acc = _accuracy(model, images, labels)
            if acc > best_acc:
                best, best_acc, improved = trial, acc, True
        if not improved:
            break
    reducer.keep_schedule = best
    return {
        "start": {"schedule": start, "accuracy": start_acc},
        "best": {"schedule": best, "accuracy": best_acc},
        "macs_fraction": count_flops(model).total / dense_macs,
    }
