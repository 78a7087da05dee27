"""``random``: keep ``k_s`` uniformly random patch tokens per image at each stage (the paper's
random-keep ablation), at DynamicViT's keep schedule."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from dynamicvit.core.interfaces import Method
from dynamicvit.methods.common import ScoredKeepMixin, reduce_vit

__all__ = ["RandomKeep", "RandomKeepMixin", "random_decisions", "random_selector"]


def random_decisions(
    batch: int, num_patches: int, counts: list[int], generator: torch.Generator | None = None, device=None
) -> list[torch.Tensor]:
    """Nested uniformly random kept indices (B, k_s) per stage, the same counts as the predictor's."""
    keys = torch.rand(batch, num_patches, generator=generator).to(device)
    order = keys.argsort(dim=1)  # a random permutation per image; nested prefixes of it
    return [order[:, :k] for k in counts]


def random_selector(seed: int = 0) -> Callable[[int, int, list[int]], list[torch.Tensor]]:
    """A ``decisions_fn(batch, num_patches, counts)`` for :func:`dynamicvit.train.evaluate.evaluate`, seeded."""
    gen = torch.Generator().manual_seed(seed)
    return lambda batch, num_patches, counts: random_decisions(batch, num_patches, counts, gen)


class RandomKeepMixin(ScoredKeepMixin):
    method = "random"
    _generator: torch.Generator

    def stage_scores(self, index: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return torch.rand(index.shape, generator=self._generator).to(index.device)


class RandomKeep(Method):
    name = "random"
    label = "random keep"
    exportable = False  # draws from a Python-side generator at run time

    @classmethod
    def apply(cls, model: nn.Module, keep_rate: float = 0.7, prune_layers=None, seed: int = 0, **_) -> nn.Module:
        return reduce_vit(
            model, RandomKeepMixin, keep_rate, prune_layers, _generator=torch.Generator().manual_seed(seed)
        )
