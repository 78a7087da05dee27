"""``random``: keep ``k_s`` uniformly random patch tokens per image at each stage (the paper's
random-keep ablation), at DynamicViT's keep schedule."""

from __future__ import annotations

import torch
from torch import nn

from dynamicvit.core.interfaces import Method
from dynamicvit.methods.common import ScoredKeepMixin, reduce_vit
from dynamicvit.methods.registry import register_method

__all__ = ["RandomKeep", "RandomKeepMixin"]


class RandomKeepMixin(ScoredKeepMixin):
    method = "random"
    _generator: torch.Generator

    def stage_scores(self, index: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return torch.rand(index.shape, generator=self._generator).to(index.device)


@register_method
class RandomKeep(Method):
    name = "random"
    label = "random keep"
    summary = "random patches at DynamicViT's counts"
    exportable = False  # draws from a Python-side generator at run time

    @classmethod
    def apply(cls, model: nn.Module, keep_rate: float = 0.7, prune_layers=None, seed: int = 0, **_) -> nn.Module:
        return reduce_vit(
            model, RandomKeepMixin, keep_rate, prune_layers, _generator=torch.Generator().manual_seed(seed)
        )
