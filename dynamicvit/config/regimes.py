"""Training regimes of a comparison: one recipe, run with the backbone frozen or fine-tuned."""

from __future__ import annotations

import dataclasses

from dynamicvit.config.fields import TrainConfig

__all__ = ["REGIMES", "default_regime", "regime_config"]

REGIMES = ("frozen", "finetune")


def regime_config(cfg: TrainConfig, regime: str) -> TrainConfig:
    """The recipe in a regime: ``frozen`` freezes the backbone for every epoch (only a method's own
    parameters learn); ``finetune`` keeps the recipe's frozen warm-up when it leaves epochs to fine-tune,
    else fine-tunes from the start.

    Args:
        cfg: the recipe.
        regime: one of :data:`REGIMES`.

    Returns:
        A copy of ``cfg`` with ``freeze_backbone_epochs`` set for the regime.
    """
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {', '.join(REGIMES)}, got {regime!r}")
    if regime == "frozen":
        return dataclasses.replace(cfg, freeze_backbone_epochs=float(cfg.epochs))
    thaw = cfg.freeze_backbone_epochs if cfg.freeze_backbone_epochs < cfg.epochs else 0.0
    return dataclasses.replace(cfg, freeze_backbone_epochs=thaw)


def default_regime(cfg: TrainConfig) -> str:
    """The regime a recipe implies by itself (``finetune`` when it ever updates the backbone)."""
    return "finetune" if cfg.freeze_backbone_epochs < cfg.epochs else "frozen"
