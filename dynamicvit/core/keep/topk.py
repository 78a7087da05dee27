"""The top-k mask rule: train with the count that inference keeps.

The paper's Gumbel rule samples a keep decision per token, so training learns keep *probabilities*
while the fixed mode's inference keeps a *count* per stage. This rule keeps each image's best
``count`` alive tokens in the training forward too – by keep log-odds plus Gumbel noise (exploration,
sampling without replacement) – with the soft top-k's straight-through gradient to the scores
(:func:`~dynamicvit.core.learned_budget.soft_topk_mask`, as the learned keep mode trains)."""

from __future__ import annotations

import torch

from dynamicvit.core.keep.rule import MASK_RULES, MaskRule
from dynamicvit.core.learned_budget import soft_topk_mask

__all__ = ["NOISES", "TopKRule"]

NOISES = ("always", "frozen")  # when the rule adds its exploration noise: every step, or while the backbone is frozen


class TopKRule(MaskRule):
    name = "topk"
    help = "each image's best k alive tokens (the stage's inference count), soft top-k gradient"

    def mask(self, log_probs: torch.Tensor, alive: torch.Tensor, count: int, explore: bool = True) -> torch.Tensor:
        ratio = (count / alive.float().sum(dim=1).clamp_min(1)).clamp(max=1.0)
        return soft_topk_mask(log_probs[..., 0] - log_probs[..., 1], alive, ratio, noise=explore).to(alive.dtype)


TOPK = MASK_RULES.register(TopKRule.name, TopKRule())
