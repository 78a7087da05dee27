"""What the ViT baselines share: no forced decisions, the class swap with a checked schedule,
and keep-by-score selection at each stage (``random``, ``static``)."""

from __future__ import annotations

import itertools
import math
from typing import ClassVar

import torch
from torch import nn

from dynamicvit.core.interfaces import Method
from dynamicvit.core.tokens import gather_tokens, iter_stages, mixed_class, patch_tokens, with_prefix
from dynamicvit.models.reducer import TokenReductionMixin
from dynamicvit.models.vit import reduction_layers

__all__ = ["BaselineMixin", "InBlockMixin", "MergePerBlock", "ScoredKeepMixin", "reduce_vit", "spread"]


def spread(rate: float, steps: int) -> list[int]:
    """A fractional per-step count as whole counts: step ``i`` takes ``⌊(i + 1)·rate + ½⌋ − ⌊i·rate + ½⌋``,
    so the first ``i`` steps always add up to ``rate · i`` rounded. An integer ``rate`` gives itself at every
    step; 2.5 gives 3, 2, 3, 2, … – which lets a knob counted in tokens per block land on any MACs budget.

    Args:
        rate: tokens per step, ``>= 0``.
        steps: how many steps.

    Returns:
        ``steps`` whole counts.
    """
    edges = [math.floor(i * rate + 0.5) for i in range(steps + 1)]
    return [b - a for a, b in itertools.pairwise(edges)]


class BaselineMixin(TokenReductionMixin):
    """A timm ViT reduced by a baseline: it chooses its own tokens (no forced decisions).

    Every baseline computes the same in train and eval mode (each image keeps the same count,
    so nothing has to be masked), so the engine can fine-tune them.
    """

    def forward_sparse(
        self, x: torch.Tensor, decisions: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if decisions is not None:
            raise ValueError(f"the {self.method} baseline chooses its own tokens; forced decisions are DynamicViT's")
        return super().forward_sparse(x)


class InBlockMixin(BaselineMixin):
    """A baseline that reduces inside its blocks (ToMe, MCTF, DiffRate): no stage boundaries."""

    @property
    def prune_layers(self) -> list[int]:
        """None: the method reduces inside the blocks."""
        return []


class ScoredKeepMixin(BaselineMixin):
    """Keep the ``k_s`` best patches by :meth:`stage_scores` before each stage's block."""

    def stage_scores(self, index: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Scores (B, n) of the alive patches, whose grid indices are ``index`` (B, n)."""
        raise NotImplementedError

    def forward_blocks(self, x, decisions, grid):
        prefix = self.num_prefix_tokens
        b, n = x.shape[0], x.shape[1] - prefix
        counts = self.keep_counts(n)
        index = torch.arange(n, device=x.device).expand(b, n)
        kept = []
        for s, blk in iter_stages(self.blocks, self._prune_layers):
            if s is not None:
                keep = self.stage_scores(index, grid).topk(counts[s], dim=1).indices
                x = with_prefix(x, prefix, gather_tokens(patch_tokens(x, prefix), keep))
                index = index.gather(1, keep)
                kept.append(index)
            x = blk(x)
        return x, kept


def reduce_vit(model: nn.Module, mixin: type, keep_rate: float, prune_layers, **attributes) -> nn.Module:
    """Swap ``mixin`` into a supported timm ViT in place, with a checked keep schedule and ``attributes``."""
    rate, layers = reduction_layers(model, keep_rate, prune_layers)
    model.__class__ = mixed_class(mixin, type(model), mixin.__name__.removesuffix("Mixin"))
    model._prune_layers, model.keep_rate = layers, rate
    for name, value in attributes.items():
        setattr(model, name, value)
    return model


class MergePerBlock(Method):
    """The registry entry of a method that merges ``r`` tokens in every block (ToMe, MCTF): its knob is ``r``,
    from half the patches (fewest MACs) to none, kept on the model as ``knob``. A fractional ``r`` is spread
    over the blocks (:func:`spread`), so the knob can land on a MACs budget that no integer reaches."""

    mixin: ClassVar[type]
    merges: ClassVar[str] = "merged"  # what the error message says is done to the r tokens
    knob_label = "r"
    keeps_subset = False

    @classmethod
    def apply(cls, model: nn.Module, keep_rate: float = 0.7, prune_layers=None, r: float = 8, **options) -> nn.Module:
        if not float(r) >= 0:
            raise ValueError(f"{cls.short_label()}'s r (tokens {cls.merges} per block) must be >= 0, got {r}")
        extra = {k: options[k] for k in cls.apply_options if k in options}
        return reduce_vit(model, cls.mixin, keep_rate, prune_layers, **{cls.knob: float(r)}, **extra)

    @classmethod
    def knob_range(cls, model: nn.Module) -> tuple[float, float]:
        return model.num_patches // 2, 0  # more merging, fewer MACs
