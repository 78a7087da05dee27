"""``dynamicvit``: the learned predictors of DynamicViT (arXiv 2106.02034) on plain ViTs, asymmetric
computation on ConvNeXt/Swin (arXiv 2207.01580) – :func:`dynamicvit.sparsify` as a method entry."""

from __future__ import annotations

from torch import nn

from dynamicvit.core.interfaces import Method
from dynamicvit.methods.registry import register_method
from dynamicvit.models.factory import sparsify

__all__ = ["PREDICTOR_EPOCHS", "DynamicViT"]

PREDICTOR_EPOCHS = 1  # predictor-only epochs before a comparison fine-tunes the backbone with DynamicViT


@register_method
class DynamicViT(Method):
    name = "dynamicvit"
    label = "DynamicViT"
    summary = "learned predictors drop tokens at three stages (per-image budgets: `--keep-mode`)"
    paper = "2106.02034"
    accepts_decisions = True
    learned = True
    uses_mask_rule = True

    @classmethod
    def apply(cls, model: nn.Module, keep_rate: float = 0.7, prune_layers=None, keep_ratios=None, **_) -> nn.Module:
        options = {} if keep_ratios is None else {"keep_ratios": keep_ratios}
        return sparsify(model, keep_rate=keep_rate, prune_layers=prune_layers, **options)

    @classmethod
    def authors_recipe(cls, cfg) -> dict:
        """The release's schedule: the predictors learn first with the backbone frozen (its first 5 of 30
        ImageNet epochs), then the whole network. A recipe that fine-tunes the backbone gets
        :data:`PREDICTOR_EPOCHS` of predictor-only training before its own epochs; a frozen recipe is unchanged.
        """
        if cfg.schedule.freeze_backbone_epochs >= cfg.schedule.epochs:
            return {}
        return {
            "epochs": cfg.schedule.epochs + PREDICTOR_EPOCHS,
            "freeze_backbone_epochs": cfg.schedule.freeze_backbone_epochs + PREDICTOR_EPOCHS,
        }
