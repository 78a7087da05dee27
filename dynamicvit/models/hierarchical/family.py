"""The hierarchical family (T-PAMI version of DynamicViT, arXiv 2207.01580): timm ConvNeXt and Swin,
classifiers or ``features_only`` nets, given asymmetric computation in one stage
(:mod:`dynamicvit.models.hierarchical.asymmetric`). A hierarchical family is added by its :class:`BlockKind` module,
which registers it in :data:`BLOCK_KINDS`, and an import here."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from dynamicvit.core.interfaces import Family
from dynamicvit.core.predictor import (
    build_predictors,
    check_keep_rate,
    check_prune_layers,
    default_prune_layers,
)
from dynamicvit.core.tokens import mixed_class
from dynamicvit.models.hierarchical import convnext, swin  # noqa: F401  (register their block kinds)
from dynamicvit.models.hierarchical.asymmetric import (
    BLOCK_KINDS,
    BlockKind,
    DynamicFeaturesMixin,
    DynamicHierarchicalMixin,
    DynamicStageMixin,
    FastPath,
    check_keep_ratios,
    default_keep_ratios,
)
from dynamicvit.models.registry import register_family

__all__ = [
    "DEFAULT_PRUNE_LAYERS",
    "FAMILY",
    "FastPath",
    "BLOCK_KINDS",
    "SUPPORTED_HIERARCHICAL",
    "is_hierarchical",
    "sparsify_hierarchical",
]

SUPPORTED_HIERARCHICAL = (
    "timm ConvNeXt (channels-last MLP blocks: convnext_tiny/small/base/large, ...) and SwinTransformer "
    "(swin_tiny/small/base_patch4_window7_224, ...), classifiers or features_only"
)


def _kind(block: nn.Module) -> BlockKind | None:
    return next((k for k in BLOCK_KINDS.values() if isinstance(block, k.block)), None)


def _stages(model: nn.Module) -> list[nn.Module]:
    stage_types = tuple(k.stage for k in BLOCK_KINDS.values())
    return [m for m in model.modules() if isinstance(m, stage_types)]


def is_hierarchical(model: nn.Module) -> bool:
    """Whether ``model`` (classifier or timm features_only net) has ConvNeXt/Swin stages."""
    return bool(_stages(model))


def _stage_stride(model: nn.Module, stage: int) -> int:
    """Input pixels per location of ``stage``'s map, from timm's feature info (4, 8, 16, 32 by default)."""
    info = getattr(model, "feature_info", None)
    entries = getattr(info, "info", info)
    return int(entries[stage]["reduction"]) if entries else 2 ** (stage + 2)


DEFAULT_PRUNE_LAYERS = {9: [1, 2, 3], 6: [1, 2, 3], 27: [3, 6, 9], 18: [2, 4, 6]}  # the journal version's


def sparsify_hierarchical(
    model: nn.Module,
    keep_rate: float = 0.7,
    prune_layers: Sequence[int] | None = None,
    keep_ratios: Sequence[float] | None = None,
    stage: int = 2,
) -> nn.Module:
    """Give a timm ConvNeXt/Swin (classifier or ``features_only``) asymmetric computation in
    ``stage`` (default the third) in place and return it. Predictors before stage-local blocks
    ``prune_layers`` (the journal version's per-depth defaults); ratios default to
    ``[rho, rho-0.2, rho-0.4]``."""
    stages = _stages(model)
    if not stages:
        raise TypeError(f"{type(model).__name__} is not supported; supported: {SUPPORTED_HIERARCHICAL}")
    if not 0 <= stage < len(stages):
        raise ValueError(f"stage must be in [0, {len(stages) - 1}], got {stage}")
    target = stages[stage]
    if isinstance(target, DynamicStageMixin):
        raise ValueError("model is already sparsified; set model.keep_ratios to change its budget")
    blocks = list(target.blocks)
    kind = _kind(blocks[0])
    if kind is None or not all(isinstance(b, kind.block) for b in blocks):
        raise TypeError(f"stage {stage} holds blocks other than timm's; supported: {SUPPORTED_HIERARCHICAL}")
    if any(getattr(b, "use_conv_mlp", False) for b in blocks):
        raise TypeError("ConvNeXt with conv_mlp=True is not supported (its MLP runs on NCHW maps)")
    depth = len(blocks)
    if prune_layers is None:
        prune_layers = DEFAULT_PRUNE_LAYERS.get(depth) or default_prune_layers(depth)
    layers = check_prune_layers(prune_layers, depth, lowest=0)
    rate = check_keep_rate(keep_rate)
    ratios = check_keep_ratios(keep_ratios if keep_ratios is not None else default_keep_ratios(rate, len(layers)))
    if len(ratios) != len(layers):
        raise ValueError(f"{len(ratios)} keep ratios for {len(layers)} prune layers")
    dim = blocks[0].mlp.fc1.in_features
    ref = next(target.parameters())
    # the added LayerNorms take the block's own epsilon (ConvNeXt 1e-6, Swin 1e-5), as the release's do
    eps = kind.norm_eps(blocks[0])
    predictors = build_predictors(dim, ratios, eps)  # each selects afresh from all locations
    for blk in blocks[layers[0] :]:
        blk.fast_path = FastPath(dim, eps=eps).to(device=ref.device, dtype=ref.dtype)
    target.__class__ = mixed_class(DynamicStageMixin, type(target), "Dynamic")
    target.score_predictor = predictors.to(device=ref.device, dtype=ref.dtype)
    target.prune_layers, target.keep_ratios = layers, ratios
    target.stride = _stage_stride(model, stage)
    target.kind = kind
    if isinstance(model, kind.models):
        model.__class__ = mixed_class(DynamicHierarchicalMixin, type(model), "Dynamic")
    elif hasattr(model, "feature_info"):  # timm features_only wrapper
        model.__class__ = mixed_class(DynamicFeaturesMixin, type(model), "Dynamic")
    return model


FAMILY = register_family(
    Family(
        name="ConvNeXt/Swin",
        supported=SUPPORTED_HIERARCHICAL,
        keeps_maps=True,
        recognises=is_hierarchical,
        sparsify=sparsify_hierarchical,
        ratio_weight=10.0,  # the journal version's keep-ratio weight for hierarchical models
        backbone_lr_scale=0.2,
        options=("keep_ratios", "stage"),
    )
)
