"""Training regimes of a comparison: one recipe, run with the backbone frozen or fine-tuned."""

from __future__ import annotations

from dynamicvit.config.fields import RunConfig

__all__ = ["REGIMES", "default_regime", "regime_config"]

REGIMES = ("frozen", "finetune")


def regime_config(cfg: RunConfig, regime: str) -> RunConfig:
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
        return cfg.replace(freeze_backbone_epochs=float(cfg.schedule.epochs))
    thaw = cfg.schedule.freeze_backbone_epochs if cfg.schedule.freeze_backbone_epochs < cfg.schedule.epochs else 0.0
    return cfg.replace(freeze_backbone_epochs=thaw)


def default_regime(cfg: RunConfig) -> str:
    """The regime a recipe implies by itself (``finetune`` when it ever updates the backbone)."""
    return "finetune" if cfg.schedule.freeze_backbone_epochs < cfg.schedule.epochs else "frozen"
