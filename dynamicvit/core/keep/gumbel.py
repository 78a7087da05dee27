"""The paper's mask rule (arXiv 2106.02034, §3.3): each token's keep decision is a hard Gumbel-softmax
sample of its keep probability, with the straight-through gradient, nested in the tokens still alive."""

from __future__ import annotations

import torch

from dynamicvit.core.keep.rule import MASK_RULES, MaskRule
from dynamicvit.core.predictor import gumbel_keep_mask

__all__ = ["GumbelRule"]


class GumbelRule(MaskRule):
    name = "gumbel"
    help = "a hard Gumbel-softmax keep sample per token, straight-through gradient (the paper)"

    def mask(self, log_probs: torch.Tensor, alive: torch.Tensor, count: int, explore: bool = True) -> torch.Tensor:
        return gumbel_keep_mask(log_probs, alive)  # the sample is the rule: it always draws


GUMBEL = MASK_RULES.register(GumbelRule.name, GumbelRule())
