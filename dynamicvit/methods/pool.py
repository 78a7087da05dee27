"""``pool``: structural down-sampling – average-pool the patch grid before each stage's block to
about ``k_s`` tokens (side × sqrt(rho) per stage), the paper's structural-downsampling ablation."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import nn

from dynamicvit.core.interfaces import Method
from dynamicvit.core.tokens import iter_stages, with_prefix
from dynamicvit.methods.common import BaselineMixin, reduce_vit
from dynamicvit.methods.registry import register_method

__all__ = ["GridPool", "GridPoolMixin"]


class GridPoolMixin(BaselineMixin):
    method = "pool"

    def token_counts(self, num_patches: int | None = None) -> list[int]:
        n = num_patches or self.num_patches
        side = math.isqrt(n)
        grid = self.patch_embed.grid_size if n == self.num_patches else (side, n // max(side, 1))
        return [h * w for h, w in self._pool_sizes(grid)]

    def _pool_sizes(self, grid: tuple[int, int]) -> list[tuple[int, int]]:
        scale = [self._keep_rate ** ((s + 1) / 2) for s in range(len(self._prune_layers))]
        return [(max(1, round(grid[0] * f)), max(1, round(grid[1] * f))) for f in scale]

    def forward_blocks(self, x, decisions, grid):
        """Tokens are mixtures of patches: no kept indices to report."""
        prefix = self.num_prefix_tokens
        sizes = self._pool_sizes(grid)
        for s, blk in iter_stages(self.blocks, self._prune_layers):
            if s is not None:
                b, _, c = x.shape
                patches = x[:, prefix:].transpose(1, 2).reshape(b, c, *grid)
                pooled = F.adaptive_avg_pool2d(patches, sizes[s]).flatten(2).transpose(1, 2)
                x, grid = with_prefix(x, prefix, pooled), sizes[s]
            x = blk(x)
        return x, []


@register_method
class GridPool(Method):
    name = "pool"
    label = "grid pooling"
    summary = "average-pools the token grid at each stage"
    keeps_subset = False

    @classmethod
    def apply(cls, model: nn.Module, keep_rate: float = 0.7, prune_layers=None, **_) -> nn.Module:
        return reduce_vit(model, GridPoolMixin, keep_rate, prune_layers)
