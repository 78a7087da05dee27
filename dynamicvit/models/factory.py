"""Build sparse models by name, like ``timm.create_model``, or sparsify one you already have.

The families come from :mod:`dynamicvit.models.registry` (a family module registers itself).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from dynamicvit.models.registry import FAMILIES, build_timm_model, family_of
from dynamicvit.weights import zoo
from dynamicvit.weights.checkpoint import load_checkpoint
from dynamicvit.weights.download import download

__all__ = ["create_model", "sparsify"]


def sparsify(
    model: nn.Module, keep_rate: float = 0.7, prune_layers: Sequence[int] | None = None, **options: Any
) -> nn.Module:
    """Add dynamic spatial sparsification to an existing timm model in place and return it.

    Plain ViTs get DynamicViT token pruning (``prune_layers`` default: blocks depth/4, depth/2,
    3·depth/4); ConvNeXt/Swin get asymmetric computation in their third stage
    (``prune_layers`` stage-local, ``keep_ratios`` default ``[rho, rho-0.2, rho-0.4]``, see
    :mod:`dynamicvit.models.hierarchical`). Weights are kept; ``score_predictor`` holds the new predictors.

    Args:
        model: a timm model of a registered family (or a Hugging Face ViT).
        keep_rate: ρ in (0, 1].
        prune_layers: where to prune (default: the family's schedule).
        **options: family options (``keep_ratios`` for ConvNeXt/Swin).

    Returns:
        ``model`` (a sparsified subclass of itself), or the converted model for Hugging Face input.

    Raises:
        TypeError: an unsupported model or an option its family does not take.
    """
    family = family_of(model)
    unknown = sorted(set(options) - set(family.options))
    if unknown:
        takers = [f.name for f in FAMILIES.values() if set(unknown) <= set(f.options)]
        where = f"{' and '.join(takers)} models only" if takers else "no model family"
        raise TypeError(f"options {unknown} apply to {where}")
    return family.sparsify(model, keep_rate=keep_rate, prune_layers=prune_layers, **options)


def create_model(
    name: str,
    keep_rate: float | None = None,
    prune_layers: Sequence[int] | None = None,
    pretrained: bool = False,
    checkpoint_path: str | None = None,
    keep_ratios: Sequence[float] | None = None,
    **timm_kwargs: Any,
) -> nn.Module:
    """``timm.create_model(name, pretrained, **timm_kwargs)`` made sparse (``keep_rate`` default 0.7),
    or a released model of :mod:`dynamicvit.weights.zoo` by its name (its keep rate; ``pretrained`` downloads
    the release's file).

    ``checkpoint_path`` loads a sparse checkpoint (backbone + predictors, strict; the release's layouts
    converted) or a dense backbone checkpoint (predictors keep their fresh initialisation).

    Args:
        name: a timm model name or a zoo name (:func:`dynamicvit.list_models`).
        keep_rate: ρ in (0, 1] (default: the zoo entry's, else 0.7).
        prune_layers: where to prune (default: the paper's schedule for the family).
        pretrained: timm's dense weights, or for a zoo name the release's file.
        checkpoint_path: a sparse or dense checkpoint to load.
        keep_ratios: ConvNeXt/Swin absolute ratios per predictor.
        **timm_kwargs: passed to ``timm.create_model`` (``num_classes``, ``img_size``, ...).

    Returns:
        The sparse model (train mode, as timm returns it).

    Raises:
        ValueError: an unknown name or a bad keep rate.
        CheckpointError: a checkpoint that cannot be read or does not fit.
    """
    arch, keep_rate, options = zoo.resolve(name, keep_rate)
    if keep_ratios is not None:
        options = {"keep_ratios": keep_ratios}
    if name in zoo.ZOO and pretrained and checkpoint_path is None:
        checkpoint_path, pretrained = download(name), False
    model = build_timm_model(arch, pretrained, **timm_kwargs)
    model = sparsify(model, keep_rate=keep_rate, prune_layers=prune_layers, **options)
    if checkpoint_path is not None:
        load_checkpoint(model, checkpoint_path)
    return model
