"""``static``: keep the ``k_s`` patches nearest the grid centre, the same for every image (the
paper's static-sparsity ablation), at DynamicViT's keep schedule."""

from __future__ import annotations

import torch
from torch import nn

from dynamicvit.core.interfaces import Method
from dynamicvit.methods.common import ScoredKeepMixin, reduce_vit
from dynamicvit.methods.registry import register_method

__all__ = ["StaticKeep", "StaticKeepMixin", "centre_scores"]


def centre_scores(index: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Higher for patches nearer the grid centre; ties broken by position (deterministic)."""
    gh, gw = grid
    row, col = (index // gw).float(), (index % gw).float()
    dist = (row + 0.5 - gh / 2) ** 2 + (col + 0.5 - gw / 2) ** 2
    return -(dist + 1e-4 * index.float() / index.numel())


class StaticKeepMixin(ScoredKeepMixin):
    method = "static"

    def stage_scores(self, index: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return centre_scores(index, grid)


@register_method
class StaticKeep(Method):
    name = "static"
    label = "static centre keep"
    summary = "the centre patches at DynamicViT's counts"

    @classmethod
    def apply(cls, model: nn.Module, keep_rate: float = 0.7, prune_layers=None, **_) -> nn.Module:
        return reduce_vit(model, StaticKeepMixin, keep_rate, prune_layers)
