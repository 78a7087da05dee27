"""The learned keep rule (keep mode ``"learned"``): a budget predictor per stage gives each image its own
count of its best-scored tokens, in training (a soft top-k mask) and at inference
(:mod:`dynamicvit.core.learned_budget`). Calibration shifts each stage's budget log-odds so the images'
counts meet a target mean cost."""

from __future__ import annotations

import torch
from torch import nn

from dynamicvit.core.keep.rule import KEEP_RULES, KeepRule
from dynamicvit.core.learned_budget import learned_counts, packed_means, topk_keep_packed

__all__ = ["LearnedRule"]


class LearnedRule(KeepRule):
    name = "learned"
    help = "per-image counts from budget predictors trained with the model (train with --ratio-loss batch)"
    per_image = True
    hierarchical = False
    onnx = False  # each image's count depends on its data
    needs_training = True
    calibrated = True
    owners = "DynamicViT on timm ViTs has"

    def prepare(self, reducer) -> None:
        reducer.add_budget_predictors()

    def budget_at(self, reducer, stage: int) -> nn.Module:
        return reducer.budget_predictor[stage]

    def image_keep(self, reducer, stage, score, seg, tokens, num_images, budgets) -> torch.Tensor:
        budget = reducer.budget_predictor[stage]
        logits = budget.logits(packed_means(tokens, seg, num_images))
        alive = torch.bincount(seg, minlength=num_images)
        budgets.append((logits, alive))
        return topk_keep_packed(score, seg, learned_counts(torch.sigmoid(logits + budget.offset), alive))

    def fitter(self, reducer) -> _OffsetFit:
        return _OffsetFit(reducer)


class _OffsetFit:
    """Each stage's budget offset (a shift of every image's budget log-odds) at which the images' counts add
    up to the target, found by bisection on the recorded log-odds."""

    def __init__(self, reducer) -> None:
        self.budgets = reducer.budget_predictor
        for budget in self.budgets:
            budget.offset.zero_()

    def fit(self, stage: int, runs: list, total: int) -> None:
        logits = torch.cat([budgets[stage][0] for *_, budgets in runs])
        alive = torch.cat([budgets[stage][1] for *_, budgets in runs])
        low, high = -40.0, 40.0
        for _ in range(60):  # the kept total grows with the offset
            mid = (low + high) / 2
            low, high = (
                (mid, high) if int(learned_counts(torch.sigmoid(logits + mid), alive).sum()) < total else (low, mid)
            )
        self.budgets[stage].offset.fill_(high)

    def kept(self, stage: int, images: int, scores: list, budgets: list) -> int:
        logits, alive = budgets[stage]
        return int(learned_counts(torch.sigmoid(logits + self.budgets[stage].offset), alive).sum())

    def result(self) -> dict:
        return {"offsets": [float(b.offset) for b in self.budgets]}


LEARNED = KEEP_RULES.register(LearnedRule.name, LearnedRule())
