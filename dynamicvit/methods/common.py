"""What the ViT baselines share: no forced decisions, the class swap with a checked schedule,
and keep-by-score selection at each stage (``random``, ``static``)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from dynamicvit.core.interfaces import Method
from dynamicvit.core.tokens import gather_tokens, iter_stages, mixed_class, patch_tokens, with_prefix
from dynamicvit.models.reducer import TokenReductionMixin
from dynamicvit.models.vit import reduction_layers

__all__ = ["BaselineMixin", "InBlockMixin", "MergePerBlock", "ScoredKeepMixin", "reduce_vit"]


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
    """The registry entry of a method that merges ``r`` tokens in every block (ToMe, MCTF): its knob is the
    integer ``r``, from half the patches (fewest MACs) to none, kept on the model as ``knob``."""

    mixin: ClassVar[type]
    merges: ClassVar[str] = "merged"  # what the error message says is done to the r tokens
    knob_label = "r"
    integer_knob = True
    keeps_subset = False

    @classmethod
    def apply(cls, model: nn.Module, keep_rate: float = 0.7, prune_layers=None, r: int = 8, **_) -> nn.Module:
        if int(r) < 0:
            name = cls.label.split(" (")[0]
            raise ValueError(f"{name}'s r (tokens {cls.merges} per block) must be >= 0, got {r}")
        return reduce_vit(model, cls.mixin, keep_rate, prune_layers, **{cls.knob: int(r)})

    @classmethod
    def knob_range(cls, model: nn.Module) -> tuple[float, float]:
        return model.num_patches // 2, 0  # more merging, fewer MACs
