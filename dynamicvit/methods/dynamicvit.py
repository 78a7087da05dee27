"""``dynamicvit``: the learned predictors of DynamicViT (arXiv 2106.02034) on plain ViTs, asymmetric
computation on ConvNeXt/Swin (arXiv 2207.01580) – :func:`dynamicvit.sparsify` as a method entry."""

from __future__ import annotations

from torch import nn

from dynamicvit.core.interfaces import Method
from dynamicvit.methods.registry import register_method
from dynamicvit.models.factory import sparsify

__all__ = ["DynamicViT"]


@register_method
class DynamicViT(Method):
    name = "dynamicvit"
    label = "DynamicViT"
    accepts_decisions = True
    learned = True
    uses_mask_rule = True

    @classmethod
    def apply(cls, model: nn.Module, keep_rate: float = 0.7, prune_layers=None, keep_ratios=None, **_) -> nn.Module:
        options = {} if keep_ratios is None else {"keep_ratios": keep_ratios}
        return sparsify(model, keep_rate=keep_rate, prune_layers=prune_layers, **options)
