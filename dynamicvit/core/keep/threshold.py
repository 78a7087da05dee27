"""The threshold keep rule (keep mode ``"threshold"``, formerly ``"adaptive"``): at inference each image keeps
the tokens whose keep probability exceeds the stage's threshold (at least its best one), so an image with more
to say keeps more.
Calibration sets each stage's threshold at the score that keeps a target count over held-out images."""

from __future__ import annotations

import math

import torch

from dynamicvit.core.keep.rule import KEEP_RULES, KeepRule
from dynamicvit.core.predictor import threshold_keep

__all__ = ["ThresholdRule"]


class ThresholdRule(KeepRule):
    name = "threshold"
    help = "per-image counts by a keep-probability threshold at inference (calibrate sets it)"
    per_image = True
    onnx = False  # each image's count depends on its data
    calibrated = True
    owners = "DynamicViT on timm ViTs and ConvNeXt/Swin has"

    def image_keep(self, reducer, stage, score, seg, tokens, num_images, budgets) -> torch.Tensor:
        return threshold_keep(score, seg, num_images, reducer.thresholds[stage])

    def fitter(self, reducer) -> _ThresholdFit:
        return _ThresholdFit(reducer)


class _ThresholdFit:
    """Each stage's threshold at the score that keeps the target count."""

    def __init__(self, reducer) -> None:
        self.reducer = reducer
        reducer.thresholds = [0.5] * len(reducer.keep_targets())

    def fit(self, stage: int, runs: list, total: int) -> None:
        ranked = torch.cat([scores[stage][0].float() for _, _, scores, _ in runs]).sort(descending=True).values
        k = min(max(total, 1), ranked.numel())
        cut = float(ranked[k - 1]) if k == ranked.numel() else (float(ranked[k - 1]) + float(ranked[k])) / 2
        thresholds = self.reducer.thresholds
        thresholds[stage] = min(max(1 / (1 + math.exp(-min(max(cut, -30.0), 30.0))), 1e-6), 1 - 1e-6)
        self.reducer.thresholds = thresholds

    def kept(self, stage: int, images: int, scores: list, budgets: list) -> int:
        score, seg = scores[stage]
        return int(threshold_keep(score, seg, images, self.reducer.thresholds[stage]).sum())

    def result(self) -> dict:
        return {"thresholds": self.reducer.thresholds}


THRESHOLD = KEEP_RULES.register(ThresholdRule.name, ThresholdRule())
KEEP_RULES.add_alias("adaptive", ThresholdRule.name)  # its name until 0.3: saved configs and scripts still load
